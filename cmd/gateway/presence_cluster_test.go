package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/router/natsbp"
)

// Presence across three real gateway processes on one NATS server
// (PROTOCOL.md section 12): answers and events agree on every instance,
// multi-device users count once, a kill -9 drops an instance's users after
// the instance timeout, a restart brings them back, and a reconnect storm
// across instances makes no left/joined pair.

const (
	clusterTimeout   = 1500 * time.Millisecond // -instance-timeout
	clusterHeartbeat = clusterTimeout / 3      // the grace of user:left
)

// presClient is a JSON client whose messages a goroutine collects, so the
// test can look for events and answers in any order.
type presClient struct {
	t    *testing.T
	user string
	c    *websocket.Conn

	mu   sync.Mutex
	msgs []map[string]any
	done chan struct{}
}

func dialPresence(t *testing.T, addr, user string) *presClient {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+token(t, user), nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", addr, user, err)
	}
	p := &presClient{t: t, user: user, c: c, done: make(chan struct{})}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		defer close(p.done)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				p.mu.Lock()
				p.msgs = append(p.msgs, m)
				p.mu.Unlock()
			}
		}
	}()
	p.waitFor("auth:ok", func(m map[string]any) bool { return m["type"] == "auth:ok" })
	return p
}

func (p *presClient) send(v any) {
	p.t.Helper()
	b, _ := json.Marshal(v)
	if err := p.c.WriteMessage(websocket.TextMessage, b); err != nil {
		p.t.Fatalf("%s: write: %v", p.user, err)
	}
}

// waitFor takes the first message that matches (waiting up to 10s).
func (p *presClient) waitFor(what string, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for i := range p.msgs {
			if match(p.msgs[i]) {
				m := p.msgs[i]
				p.msgs = append(p.msgs[:i], p.msgs[i+1:]...)
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	p.t.Fatalf("%s: no %s within 10s; got %v", p.user, what, p.snapshot())
	return nil
}

func (p *presClient) snapshot() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.msgs...)
}

func (p *presClient) join(room string) {
	p.t.Helper()
	p.send(map[string]any{"type": "join", "room": room})
	p.waitFor("joined "+room, func(m map[string]any) bool { return m["type"] == "joined" && m["room"] == room })
}

func (p *presClient) leave(room string) {
	p.t.Helper()
	p.send(map[string]any{"type": "leave", "room": room})
	p.waitFor("left "+room, func(m map[string]any) bool { return m["type"] == "left" && m["room"] == room })
}

// close closes the connection with 1000 and waits for the reader to end.
func (p *presClient) close() {
	_ = p.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	_ = p.c.Close()
}

var presSeq sync.Mutex
var presN int

// presence asks for the room's users.
func (p *presClient) presence(room string) []string {
	p.t.Helper()
	presSeq.Lock()
	presN++
	id := fmt.Sprintf("p%d", presN)
	presSeq.Unlock()
	p.send(map[string]any{"type": "presence", "room": room, "id": id})
	m := p.waitFor("presence "+id, func(m map[string]any) bool { return m["id"] == id })
	if m["type"] != "presence" {
		p.t.Fatalf("%s: presence: %v", p.user, m)
	}
	users := []string{}
	for _, u := range m["users"].([]any) {
		users = append(users, u.(string))
	}
	return users
}

// eventsOf takes every user:joined / user:left of room received so far,
// as "joined U" / "left U".
func (p *presClient) eventsOf(room string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	kept := p.msgs[:0]
	for _, m := range p.msgs {
		if (m["type"] == "user:joined" || m["type"] == "user:left") && m["room"] == room {
			out = append(out, strings.TrimPrefix(m["type"].(string), "user:")+" "+m["user"].(string))
			continue
		}
		kept = append(kept, m)
	}
	p.msgs = kept
	return out
}

// waitEvent waits for one user:joined / user:left of user in room.
func (p *presClient) waitEvent(typ, room, user string) {
	p.t.Helper()
	p.waitFor(typ+" "+user, func(m map[string]any) bool {
		return m["type"] == typ && m["room"] == room && m["user"] == user
	})
}

func startPresenceGateway(t *testing.T, natsURL, id string) *gwProc {
	return startGateway(t, "-jwt-secret", testSecret, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-nats-url", natsURL, "-instance-id", id, "-presence-events", "-loops", "2",
		"-instance-timeout", clusterTimeout.String())
}

// agree waits until every watcher's presence of room is want.
func agree(t *testing.T, watchers []*presClient, room string, want ...string) {
	t.Helper()
	sort.Strings(want)
	for _, w := range watchers {
		waitFor(t, 10*time.Second, func() string {
			if got := w.presence(room); !reflect.DeepEqual(got, append([]string{}, want...)) {
				return fmt.Sprintf("%s's presence of %s: %v, want %v", w.user, room, got, want)
			}
			return ""
		})
	}
}

func TestPresenceCluster(t *testing.T) {
	ns, err := natsbp.StartEmbedded(natsbp.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	url := ns.ClientURL()
	gws := map[string]*gwProc{}
	for _, id := range []string{"a", "b", "c"} {
		gws[id] = startPresenceGateway(t, url, id)
	}
	const room = "lobby"
	// One watcher per instance; each sees the others arrive.
	wa, wb, wc := dialPresence(t, gws["a"].Addr, "wa"), dialPresence(t, gws["b"].Addr, "wb"), dialPresence(t, gws["c"].Addr, "wc")
	watchers := []*presClient{wa, wb, wc}
	for _, w := range watchers {
		w.join(room)
	}
	agree(t, watchers, room, "wa", "wb", "wc")
	for _, w := range watchers {
		w.eventsOf(room) // who arrived before whom differs per watcher
	}

	// Joins in every order: single users on each instance, a user with
	// devices on two instances, a user with two devices on one.
	ua, ub, uc := dialPresence(t, gws["a"].Addr, "ua"), dialPresence(t, gws["b"].Addr, "ub"), dialPresence(t, gws["c"].Addr, "uc")
	ma, mb := dialPresence(t, gws["a"].Addr, "multi"), dialPresence(t, gws["b"].Addr, "multi")
	d1, d2 := dialPresence(t, gws["c"].Addr, "duo"), dialPresence(t, gws["c"].Addr, "duo")
	sb, sc := dialPresence(t, gws["b"].Addr, "shared"), dialPresence(t, gws["c"].Addr, "shared")
	for _, c := range []*presClient{uc, mb, ua, d2, ma, ub, d1, sc, sb} {
		c.join(room)
	}
	everyone := []string{"duo", "multi", "shared", "ua", "ub", "uc", "wa", "wb", "wc"}
	agree(t, watchers, room, everyone...)
	for _, w := range watchers {
		for _, u := range []string{"ua", "ub", "uc", "multi", "duo", "shared"} {
			w.waitEvent("user:joined", room, u)
		}
	}

	// Leaves in every order: a second device leaving tells nothing; the
	// last one anywhere tells user:left, on every instance.
	ma.leave(room)
	d1.close()
	agree(t, watchers, room, everyone...)
	mb.leave(room)
	d2.leave(room)
	agree(t, watchers, room, "shared", "ua", "ub", "uc", "wa", "wb", "wc")
	for _, w := range watchers {
		w.waitEvent("user:left", room, "multi")
		w.waitEvent("user:left", room, "duo")
		if ev := w.eventsOf(room); len(ev) != 0 {
			t.Fatalf("%s: extra events %v (a second device must not tell)", w.user, ev)
		}
	}

	// kill -9 c: its users leave on a and b within the instance timeout
	// plus a heartbeat; shared stays (it is on b too).
	gws["c"].Signal(syscall.SIGKILL)
	killed := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, 2)
	for i, w := range []*presClient{wa, wb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(10 * time.Second)
			left := map[string]bool{}
			for time.Now().Before(deadline) && !(left["uc"] && left["wc"]) {
				for _, ev := range w.eventsOf(room) {
					if u, ok := strings.CutPrefix(ev, "left "); ok {
						left[u] = true
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = time.Since(killed)
			if !(left["uc"] && left["wc"]) || left["shared"] {
				t.Errorf("%s: after kill -9 of c, left %v; want uc and wc, not shared", w.user, left)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("after kill -9 of c: user:left on a after %v, on b after %v (instance timeout %v + heartbeat %v)", took[0], took[1], clusterTimeout, clusterHeartbeat)
	for i, d := range took {
		if d > clusterTimeout+clusterHeartbeat+5*time.Second { // generous: a loaded machine
			t.Fatalf("watcher %d saw c's users leave %v after the kill", i, d)
		}
	}
	agree(t, []*presClient{wa, wb}, room, "shared", "ua", "ub", "wa", "wb")
	for _, id := range []string{"a", "b"} {
		fams := scrape(t, gws[id])
		if v, _ := metricValue(fams, "wsgate_presence_instances_lost_total"); v < 1 {
			t.Errorf("gateway %s: wsgate_presence_instances_lost_total = %v after c was killed, want >= 1", id, v)
		}
		if v, _ := metricValue(fams, "wsgate_presence_rooms"); v != 1 {
			t.Errorf("gateway %s: wsgate_presence_rooms = %v, want 1", id, v)
		}
		if v, _ := metricValue(fams, "wsgate_presence_messages_total", "direction", "received"); v < 1 {
			t.Errorf("gateway %s: wsgate_presence_messages_total{direction=received} = %v, want > 0", id, v)
		}
	}

	// Restart c: its users come back with user:joined.
	gws["c"].Wait(5 * time.Second)
	gws["c"] = startPresenceGateway(t, url, "c")
	uc2 := dialPresence(t, gws["c"].Addr, "uc")
	uc2.join(room)
	for _, w := range []*presClient{wa, wb} {
		w.waitEvent("user:joined", room, "uc")
	}
	agree(t, []*presClient{wa, wb, uc2}, room, "shared", "ua", "uc", "ub", "wa", "wb")
	for _, w := range []*presClient{wa, wb} {
		if ev := w.eventsOf(room); len(ev) != 0 {
			t.Fatalf("%s: extra events %v", w.user, ev)
		}
	}

	// Reconnect storm: each storm user's connection on a goes while its
	// new one joins on b (half close first, half join first).
	const storm = 20
	var olds []*presClient
	var names []string
	for i := range storm {
		name := fmt.Sprintf("st%02d", i)
		names = append(names, name)
		o := dialPresence(t, gws["a"].Addr, name)
		o.join(room)
		olds = append(olds, o)
	}
	want := append([]string{"shared", "ua", "uc", "ub", "wa", "wb"}, names...)
	agree(t, []*presClient{wa, wb}, room, want...)
	for _, w := range []*presClient{wa, wb} {
		w.eventsOf(room)
	}
	for i, o := range olds {
		if i%2 == 0 {
			o.close()
			dialPresence(t, gws["b"].Addr, names[i]).join(room)
		} else {
			dialPresence(t, gws["b"].Addr, names[i]).join(room)
			o.close()
		}
	}
	// A sentinel's leave, told after the grace that any storm user's leave
	// would have had, marks the point past which none can come.
	sentinel := dialPresence(t, gws["b"].Addr, "sentinel")
	sentinel.join(room)
	sentinel.leave(room)
	for _, w := range []*presClient{wa, wb} {
		w.waitEvent("user:left", room, "sentinel")
	}
	agree(t, []*presClient{wa, wb}, room, want...)
	for _, w := range []*presClient{wa, wb} {
		for _, ev := range w.eventsOf(room) {
			if strings.HasSuffix(ev, " sentinel") {
				continue
			}
			t.Errorf("%s: reconnect storm produced %q", w.user, ev)
		}
	}
}
