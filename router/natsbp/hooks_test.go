package natsbp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
	"github.com/wsgate/wsgate/wire"
)

// service is a NATS connection of a service written in the test.
func hookService(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("service connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// dialRaw opens a connection with a token for user in the URL and reads
// nothing.
func (in *instance) dialRaw(user string, protocols ...string) *client {
	in.t.Helper()
	tok, err := auth.MintHS256(secret, auth.Claims{Sub: user, Pub: []string{"**"}, Tags: map[string]string{"plan": "pro"}}, time.Hour)
	if err != nil {
		in.t.Fatal(err)
	}
	d := websocket.Dialer{Subprotocols: protocols}
	c, _, err := d.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		in.t.Fatalf("dial: %v", err)
	}
	in.t.Cleanup(func() { _ = c.Close() })
	return &client{t: in.t, conn: c}
}

// expectClose reads until the connection closes and returns the close
// code and reason.
func (c *client) expectClose() (int, string) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.conn.ReadMessage()
		if err == nil {
			c.t.Fatalf("want a close, got message %s", b)
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		c.t.Fatalf("want a close frame, got %v", err)
	}
}

func hookInstance(t *testing.T, id, url string, loops int, tune func(*router.Options)) *instance {
	t.Helper()
	return startInstanceWith(t, id, Options{URLs: []string{url}}, loops, tune)
}

// reply answers a NATS request with body.
func reply(t *testing.T, m *nats.Msg, body string) {
	if err := m.Respond([]byte(body)); err != nil {
		t.Errorf("respond: %v", err)
	}
}

func TestEventsAcrossInstances(t *testing.T) {
	ns := startNATS(t, 0)
	svc := hookService(t, ns.ClientURL())
	events := make(chan *nats.Msg, 64)
	if _, err := svc.ChanSubscribe("gw.event.>", events); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	on := func(o *router.Options) { o.Events = true }
	a := hookInstance(t, "a", ns.ClientURL(), 2, on)
	b := hookInstance(t, "b", ns.ClientURL(), 2, on)

	type ev struct {
		User, Conn, Instance, Room string
		Code                       *int
		TS                         int64
	}
	next := func(subject string) ev {
		t.Helper()
		select {
		case m := <-events:
			if m.Subject != subject {
				t.Fatalf("event on %s, want %s (%s)", m.Subject, subject, m.Data)
			}
			var e ev
			if err := json.Unmarshal(m.Data, &e); err != nil {
				t.Fatalf("event %s: %v", m.Data, err)
			}
			if e.TS < time.Now().Add(-time.Minute).UnixMilli() || e.TS > time.Now().Add(time.Minute).UnixMilli() {
				t.Fatalf("event %s: ts %d", m.Data, e.TS)
			}
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no event, want %s", subject)
		}
		return ev{}
	}

	alice := a.dialRaw("alice")
	aliceConn := alice.expect("auth:ok")["conn"].(string)
	if e := next("gw.event.connect"); e.User != "alice" || e.Conn != aliceConn || e.Instance != "a" || e.Code != nil {
		t.Fatalf("connect event %+v", e)
	}
	bob := b.dialRaw("bob")
	bobConn := bob.expect("auth:ok")["conn"].(string)
	if e := next("gw.event.connect"); e.User != "bob" || e.Conn != bobConn || e.Instance != "b" {
		t.Fatalf("connect event %+v", e)
	}
	alice.send(`{"type":"join","room":"lobby"}`)
	alice.expect("joined")
	if e := next("gw.event.join.lobby"); e.User != "alice" || e.Room != "lobby" || e.Instance != "a" || e.Conn != aliceConn {
		t.Fatalf("join event %+v", e)
	}
	bob.send(`{"type":"join","room":"lobby"}`)
	bob.expect("joined")
	if e := next("gw.event.join.lobby"); e.User != "bob" || e.Instance != "b" {
		t.Fatalf("join event %+v", e)
	}
	alice.send(`{"type":"leave","room":"lobby"}`)
	alice.expect("left")
	if e := next("gw.event.leave.lobby"); e.User != "alice" || e.Room != "lobby" || e.Instance != "a" {
		t.Fatalf("leave event %+v", e)
	}
	alice.send(`{"type":"join","room":"lobby"}`)
	alice.expect("joined")
	next("gw.event.join.lobby")

	// Closing leaves every room first, then disconnects, with the close code.
	_ = alice.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
	if e := next("gw.event.leave.lobby"); e.User != "alice" {
		t.Fatalf("leave on close %+v", e)
	}
	if e := next("gw.event.disconnect"); e.User != "alice" || e.Conn != aliceConn || e.Instance != "a" || e.Code == nil || *e.Code != 1000 {
		t.Fatalf("disconnect event %+v", e)
	}
	_ = bob.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "app"), time.Now().Add(time.Second))
	next("gw.event.leave.lobby")
	if e := next("gw.event.disconnect"); e.User != "bob" || e.Instance != "b" || e.Code == nil || *e.Code != 4000 {
		t.Fatalf("disconnect event %+v", e)
	}
	select {
	case m := <-events:
		t.Fatalf("extra event %s %s", m.Subject, m.Data)
	case <-time.After(200 * time.Millisecond):
	}
	if st := a.router.EventStats(); st.Published != 6 || st.Dropped != 0 {
		t.Fatalf("instance a event stats %+v, want 6 published", st)
	}
	if st := b.router.EventStats(); st.Published != 4 || st.Dropped != 0 {
		t.Fatalf("instance b event stats %+v, want 4 published", st)
	}
}

// connectHook starts a gw.hook.connect service that answers by user with
// answers[user] ("" = never answers) and records the requests.
func connectHook(t *testing.T, url string, answers map[string]string) chan map[string]any {
	t.Helper()
	svc := hookService(t, url)
	reqs := make(chan map[string]any, 16)
	_, err := svc.Subscribe("gw.hook.connect", func(m *nats.Msg) {
		var req map[string]any
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("connect hook request %s: %v", m.Data, err)
			return
		}
		reqs <- req
		if a := answers[req["user"].(string)]; a != "" {
			reply(t, m, a)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	return reqs
}

func TestConnectHook(t *testing.T) {
	ns := startNATS(t, 0)
	reqs := connectHook(t, ns.ClientURL(), map[string]string{
		"alice":   `{"allow":true,"rooms":["lobby","news"],"channels":["alerts"]}`,
		"bob":     `{"allow":true}`,
		"mallory": `{"allow":false,"reason":"banned"}`,
		"weird":   `{"allow":"yes"}`,
		"badroom": `{"allow":true,"rooms":["no spaces"]}`,
		"greedy":  `{"allow":true,"rooms":["a","b"],"channels":["c","d"]}`,
	})
	in := hookInstance(t, "a", ns.ClientURL(), 2, func(o *router.Options) {
		o.HookConnect = true
		o.HookTimeout = 500 * time.Millisecond
		o.MaxSubscriptions = 3 // alice's three fit, greedy's four do not
	})

	t.Run("allow with rooms", func(t *testing.T) {
		alice := in.dialRaw("alice")
		ok := alice.expect("auth:ok")
		req := <-reqs
		claims, _ := req["claims"].(map[string]any)
		if req["user"] != "alice" || req["conn"] != ok["conn"] || req["instance"] != "a" || claims["sub"] != "alice" || claims["tags"].(map[string]any)["plan"] != "pro" {
			t.Fatalf("hook request %v (auth:ok %v)", req, ok)
		}
		for _, room := range []string{"lobby", "news"} {
			if m := alice.expect("joined"); m["room"] != room || m["server"] != true {
				t.Fatalf("server join %v, want %s", m, room)
			}
		}
		if m := alice.expect("subscribed"); m["channel"] != "alerts" || m["server"] != true {
			t.Fatalf("server subscribe %v", m)
		}
		bob := in.dialRaw("bob")
		bob.expect("auth:ok")
		<-reqs
		bob.send(`{"type":"join","room":"lobby"}`)
		bob.expect("joined")
		bob.send(`{"type":"message","room":"lobby","data":"hi"}`)
		if m := alice.expect("message"); m["data"] != "hi" || m["from"] != "bob" {
			t.Fatalf("alice got %v", m)
		}
	})
	t.Run("allow msgpack", func(t *testing.T) {
		alice := in.dialRaw("alice", "gw.msgpack")
		<-reqs
		var got []map[string]any
		for len(got) < 4 {
			_ = alice.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := alice.conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			j, err := wire.Transcode(nil, b, wire.CodecMsgpack, wire.CodecJSON)
			if err != nil {
				t.Fatalf("not msgpack: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(j, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if got[0]["type"] != "auth:ok" || got[1]["type"] != "joined" || got[1]["server"] != true || got[3]["channel"] != "alerts" || got[3]["server"] != true {
			t.Fatalf("msgpack replies %v", got)
		}
	})
	t.Run("deny", func(t *testing.T) {
		c := in.dialRaw("mallory")
		if code, reason := c.expectClose(); code != 4503 || reason != "banned" {
			t.Fatalf("close %d %q, want 4503 banned", code, reason)
		}
		<-reqs
	})
	t.Run("malformed", func(t *testing.T) {
		for _, user := range []string{"weird", "badroom", "greedy"} {
			c := in.dialRaw(user)
			if code, reason := c.expectClose(); code != 4503 || reason != "connect hook: malformed answer" {
				t.Fatalf("%s: close %d %q, want 4503 malformed", user, code, reason)
			}
			<-reqs
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c := in.dialRaw("silent")
		<-reqs // the hook has it and will never answer
		// Waiting: ping is answered, anything else is refused unprocessed.
		c.send(`{"type":"ping","id":"p"}`)
		c.expect("pong")
		c.send(`{"type":"join","room":"lobby","id":"j"}`)
		if m := c.expect("error"); m["code"] != "unauthorized" || m["id"] != "j" {
			t.Fatalf("join while waiting: %v", m)
		}
		if code, _ := c.expectClose(); code != 1013 {
			t.Fatalf("close %d, want 1013", code)
		}
	})
	st := in.router.HookStats()[router.HookConnect]
	if st[router.HookAllow] != 3 || st[router.HookDeny] != 1 || st[router.HookMalformed] != 3 || st[router.HookTimeout] != 1 || st[router.HookUnavailable] != 0 {
		t.Fatalf("connect hook stats %v", st)
	}
}

func TestConnectHookAbsent(t *testing.T) {
	ns := startNATS(t, 0)
	in := hookInstance(t, "a", ns.ClientURL(), 1, func(o *router.Options) {
		o.HookConnect = true
		o.HookTimeout = time.Minute // no responder is told at once, not by the timeout
	})
	c := in.dialRaw("alice")
	if code, reason := c.expectClose(); code != 1013 {
		t.Fatalf("close %d %q, want 1013", code, reason)
	}
	st := in.router.HookStats()[router.HookConnect]
	if st[router.HookUnavailable] != 1 || st[router.HookTimeout] != 0 {
		t.Fatalf("connect hook stats %v", st)
	}
}

// A connect hook that never answers holds no loop: another connection on
// the same (only) loop is admitted while the first still waits.
func TestConnectHookHungDoesNotDelayOthers(t *testing.T) {
	ns := startNATS(t, 0)
	reqs := connectHook(t, ns.ClientURL(), map[string]string{"fast": `{"allow":true}`})
	in := hookInstance(t, "a", ns.ClientURL(), 1, func(o *router.Options) {
		o.HookConnect = true
		o.HookTimeout = 30 * time.Second
	})
	slow := in.dialRaw("slow")
	if r := <-reqs; r["user"] != "slow" {
		t.Fatalf("first request %v", r)
	}
	fast := in.dialRaw("fast")
	fast.expect("auth:ok")
	fast.send(`{"type":"join","room":"lobby"}`)
	fast.expect("joined")
	st := in.router.HookStats()[router.HookConnect]
	if st[router.HookTimeout] != 0 || st[router.HookAllow] != 1 {
		t.Fatalf("stats %v: the slow hook must still be pending", st)
	}
	slow.send(`{"type":"ping"}`)
	slow.expect("pong")
}

func TestJoinHook(t *testing.T) {
	ns := startNATS(t, 0)
	svc := hookService(t, ns.ClientURL())
	var mu sync.Mutex
	var asked []map[string]any
	sub, err := svc.Subscribe("gw.hook.join", func(m *nats.Msg) {
		var req map[string]any
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("join hook request %s: %v", m.Data, err)
			return
		}
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		switch req["room"] {
		case "vip.ok":
			reply(t, m, `{"allow":true}`)
		case "vip.no":
			reply(t, m, `{"allow":false,"reason":"members only"}`)
		case "vip.odd":
			reply(t, m, `not json`)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	in := hookInstance(t, "a", ns.ClientURL(), 2, func(o *router.Options) {
		o.HookJoin = []string{"vip.*"}
		o.HookTimeout = 300 * time.Millisecond
	})
	alice := in.dial("alice")
	conn := ""
	join := func(room, id string) map[string]any {
		t.Helper()
		alice.send(`{"type":"join","room":"` + room + `","id":"` + id + `"}`)
		return alice.next(5 * time.Second)
	}
	if m := join("lobby", "1"); m["type"] != "joined" || m["id"] != "1" {
		t.Fatalf("lobby: %v", m)
	}
	mu.Lock()
	if len(asked) != 0 {
		t.Fatalf("a room outside -hook-join asked the hook: %v", asked)
	}
	mu.Unlock()
	if m := join("vip.ok", "2"); m["type"] != "joined" || m["room"] != "vip.ok" || m["id"] != "2" {
		t.Fatalf("vip.ok: %v", m)
	}
	mu.Lock()
	if len(asked) != 1 || asked[0]["user"] != "alice" || asked[0]["room"] != "vip.ok" || asked[0]["conn"] == "" {
		t.Fatalf("hook requests %v", asked)
	}
	conn, _ = asked[0]["conn"].(string)
	mu.Unlock()
	if _, err := strconv.ParseUint(conn, 36, 64); err != nil {
		t.Fatalf("conn %q", conn)
	}
	if m := join("vip.no", "3"); m["type"] != "error" || m["code"] != "forbidden" || m["message"] != "members only" || m["id"] != "3" {
		t.Fatalf("vip.no: %v", m)
	}
	if m := join("vip.odd", "4"); m["type"] != "error" || m["code"] != "forbidden" || m["id"] != "4" {
		t.Fatalf("vip.odd: %v", m)
	}
	if m := join("vip.hang", "5"); m["type"] != "error" || m["code"] != "unavailable" || m["id"] != "5" {
		t.Fatalf("vip.hang: %v", m)
	}
	// The joined room works; a denied one is not joined.
	alice.send(`{"type":"message","room":"vip.no","data":1,"id":"6"}`)
	if m := alice.expect("error"); m["code"] != "not_joined" {
		t.Fatalf("message to a denied room: %v", m)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m := join("vip.gone", "7"); m["type"] != "error" || m["code"] != "unavailable" {
		t.Fatalf("vip.gone with no service: %v", m)
	}
	st := in.router.HookStats()[router.HookJoin]
	if st[router.HookAllow] != 1 || st[router.HookDeny] != 1 || st[router.HookMalformed] != 1 || st[router.HookTimeout] != 1 || st[router.HookUnavailable] != 1 {
		t.Fatalf("join hook stats %v", st)
	}
}

func TestHooksNeedNATS(t *testing.T) {
	r, err := router.New(router.Options{Auth: auth.Config{Secret: secret}, HookConnect: true, Backplane: router.NewLocalHub().Join()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Addr: "127.0.0.1:0", Loops: 1}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(e); err == nil {
		t.Fatal("Bind accepted hooks on a backplane without NATS")
	}
}

// With NATS down, events are dropped and counted, never queued up or
// waited for: the client's join is answered as usual. A join hook has
// nobody to ask and answers unavailable.
func TestEventsDroppedAndHooksUnavailableWhileNATSDown(t *testing.T) {
	ns := startNATS(t, 0)
	in := hookInstance(t, "a", ns.ClientURL(), 1, func(o *router.Options) {
		o.Events = true
		o.HookJoin = []string{"vip.*"}
	})
	alice := in.dial("alice")
	waitEvents := func(cond func(router.EventStats) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond(in.router.EventStats()) {
			if time.Now().After(deadline) {
				t.Fatalf("event stats %+v", in.router.EventStats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitEvents(func(s router.EventStats) bool { return s.Published == 1 })
	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for in.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("router still ready with NATS down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	alice.send(`{"type":"join","room":"lobby","id":"j1"}`)
	if m := alice.expect("joined"); m["id"] != "j1" {
		t.Fatalf("join while NATS is down: %v", m)
	}
	waitEvents(func(s router.EventStats) bool { return s.Published == 1 && s.Dropped == 1 })
	alice.send(`{"type":"join","room":"vip.x","id":"j2"}`)
	if m := alice.expect("error"); m["code"] != "unavailable" || m["id"] != "j2" {
		t.Fatalf("join hook while NATS is down: %v", m)
	}
	if st := in.router.HookStats()[router.HookJoin]; st[router.HookUnavailable] != 1 {
		t.Fatalf("join hook stats %v", st)
	}
}

// A join hook that never answers holds no loop either: on the same (only)
// loop, another connection joins and talks while the first join waits, and
// the waiting connection itself still gets answers to other requests.
func TestJoinHookHungDoesNotDelayOthers(t *testing.T) {
	ns := startNATS(t, 0)
	svc := hookService(t, ns.ClientURL())
	asked := make(chan struct{}, 1)
	if _, err := svc.Subscribe("gw.hook.join", func(*nats.Msg) { asked <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	in := hookInstance(t, "a", ns.ClientURL(), 1, func(o *router.Options) {
		o.HookJoin = []string{"vip.*"}
		o.HookTimeout = 30 * time.Second
	})
	alice, bob := in.dial("alice"), in.dial("bob")
	alice.send(`{"type":"join","room":"vip.wait","id":"w"}`)
	<-asked
	alice.send(`{"type":"join","room":"lobby","id":"l"}`)
	if m := alice.expect("joined"); m["id"] != "l" {
		t.Fatalf("alice lobby %v", m)
	}
	bob.send(`{"type":"join","room":"lobby"}`)
	bob.expect("joined")
	bob.send(`{"type":"message","room":"lobby","data":"hi"}`)
	if m := alice.expect("message"); m["data"] != "hi" {
		t.Fatalf("alice got %v", m)
	}
	if st := in.router.HookStats()[router.HookJoin]; st != [len(st)]uint64{} {
		t.Fatalf("join hook stats %v: the hung join must still be pending", st)
	}
}
