package natsbp

import (
	"context"
	"encoding/json"
	"fmt"
	clientwire "github.com/wsgate/wsgate/wire"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
)

// Tests of the inbound flow (inbound.go): byte-bounded handoffs from NATS,
// drops counted once and told to the receivers with gap.

// startFlowGW is startGW with engine options, and a hook to wrap the
// backplane the router is given.
func startFlowGW(t testing.TB, id string, bo Options, eo engine.Options, wrap func(*Backplane) router.Backplane) *instance {
	t.Helper()
	if bo.ReconnectWait == 0 {
		bo.ReconnectWait = 50 * time.Millisecond
	}
	bo.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	bp := New(bo)
	var rbp router.Backplane = bp
	if wrap != nil {
		rbp = wrap(bp)
	}
	r, err := router.New(router.Options{InstanceID: id, Auth: auth.Config{Secret: secret}, Backplane: rbp, History: bo.History.Enabled, RateMsgs: -1})
	if err != nil {
		t.Fatal(err)
	}
	eo.Addr = "127.0.0.1:0"
	if eo.Loops == 0 {
		eo.Loops = 1
	}
	e, err := engine.New(eo, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(e); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
		_ = r.Close()
	})
	return &instance{t: t, eng: e, router: r, bp: bp}
}

// blockLoop runs a task on loop i that waits for the returned release: the
// loop is busy and its inbox fills. It returns once the loop is in it.
func (in *instance) blockLoop(i int) (release func()) {
	in.t.Helper()
	inside, done := make(chan struct{}), make(chan struct{})
	if !in.eng.Loops()[i].Post(engine.Task{Fn: func(*engine.Loop, any) { close(inside); <-done }}) {
		in.t.Fatalf("loop %d is not running", i)
	}
	<-inside
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	in.t.Cleanup(release)
	return release
}

// service is a plain NATS client publishing as a backend service would.
func service(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func mustPublish(t testing.TB, nc *nats.Conn, subj string, payload []byte) {
	t.Helper()
	if err := nc.Publish(subj, payload); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// burstPayload is service message i of a burst, about 1 KB.
func burstPayload(i int) []byte {
	return fmt.Appendf(nil, `{"data":[%d,"%s"],"from":"svc"}`, i, strings.Repeat("x", 1000))
}

// readBurst reads the room messages of a burst until the gap, checking they
// come in order; it returns how many came and the gap.
func readBurst(t testing.TB, c *client, room string) (int, map[string]any) {
	t.Helper()
	got, last := 0, -1
	for {
		m := c.next(10 * time.Second)
		if m == nil {
			t.Fatalf("%d messages and no gap", got)
		}
		switch m["type"] {
		case "gap":
			return got, m
		case "message":
			if m["room"] != room {
				t.Fatalf("message for another room: %v", m)
			}
			i := int(m["data"].([]any)[0].(float64))
			if i <= last {
				t.Fatalf("message %d after %d", i, last)
			}
			last = i
			got++
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
}

// A service burst from NATS into a loop whose inbox byte budget is spent:
// what does not fit is refused and counted, the room's members get what fit
// and then one gap with exactly the number refused; a member of another
// room on the same loop gets no gap (issue 9, defect 7).
func TestNATSBurstIntoFullLoopGetsGap(t *testing.T) {
	ns := startNATS(t, 0)
	in := startFlowGW(t, "a", Options{URLs: []string{ns.ClientURL()}}, engine.Options{Loops: 1, InboxBytes: 64 << 10}, nil)
	member, bystander := in.dial("member"), in.dial("bystander")
	member.join("burst")
	bystander.join("calm")
	in.waitSubscribed(5) // all, two users, two rooms
	svc := service(t, ns.ClientURL())

	release := in.blockLoop(0)
	const n = 200
	for i := range n {
		mustPublish(t, svc, "gw.room.burst", burstPayload(i))
	}
	mustPublish(t, svc, "gw.room.burst", []byte("not json")) // after every delivery above
	waitUntil(t, "the receiver to handle the burst", func() bool { return in.bp.Stats().DecodeErrors == 1 })
	refused, _ := in.eng.Loops()[0].InboxDrops()
	if refused == 0 || refused >= n {
		t.Fatalf("the loop refused %d of %d messages: want some, not all", refused, n)
	}
	release()

	got, gap := readBurst(t, member, "burst")
	if got+int(refused) != n || gap["dropped"] != float64(refused) || gap["room"] != "burst" || gap["reason"] != clientwire.GapOverload {
		t.Fatalf("%d messages then gap %v: want %d and dropped %d", got, gap, n-int(refused), refused)
	}
	bystander.send(`{"type":"ping","id":"b"}`)
	bystander.expect("pong") // no gap before it
	if s := in.bp.Stats(); s.Dropped != 0 || s.Received != n {
		t.Fatalf("backplane stats %+v: nothing dropped before the loop", s)
	}
}

// gatedBackplane hands the router's deliver function to the backplane
// through a gate that the test can close: the receiver goroutine then
// stalls in delivery, as a slow one would.
type gatedBackplane struct {
	*Backplane
	mu     sync.Mutex
	closed chan struct{} // non-nil while the gate is closed
	seen   atomic.Int64
}

func (g *gatedBackplane) Start(id string, host router.Host) error {
	deliver := host.Deliver
	host.Deliver = func(rm *router.Remote) {
		g.seen.Add(1)
		g.mu.Lock()
		c := g.closed
		g.mu.Unlock()
		if c != nil {
			<-c
		}
		deliver(rm)
	}
	return g.Backplane.Start(id, host)
}

func (g *gatedBackplane) close() {
	g.mu.Lock()
	g.closed = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedBackplane) open() {
	g.mu.Lock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
	g.mu.Unlock()
}

// The backplane's own queue is bounded by bytes (PendingBytes): with the
// receiver stalled, a burst beyond the budget is dropped and counted once,
// and the members get what was queued and then a gap with exactly that
// count (issue 9, defect 7).
func TestNATSPendingBytesBoundTellsGap(t *testing.T) {
	ns := startNATS(t, 0)
	var gate *gatedBackplane
	in := startFlowGW(t, "a", Options{URLs: []string{ns.ClientURL()}, PendingBytes: 64 << 10}, engine.Options{Loops: 2},
		func(b *Backplane) router.Backplane { gate = &gatedBackplane{Backplane: b}; return gate })
	member := in.dial("member")
	member.join("burst")
	in.waitSubscribed(3)
	svc := service(t, ns.ClientURL())

	gate.close()
	t.Cleanup(gate.open)
	before := in.bp.rx.pumped.Load()
	const n = 200
	for i := range n {
		mustPublish(t, svc, "gw.room.burst", burstPayload(i))
	}
	waitUntil(t, "the pump to take the burst", func() bool { return in.bp.rx.pumped.Load()-before == n })
	dropped := in.bp.Stats().Dropped
	if dropped == 0 || dropped >= n {
		t.Fatalf("dropped %d of %d: want some, not all", dropped, n)
	}
	if q := in.bp.rx.bytes.Load(); q > 64<<10 {
		t.Fatalf("%d bytes queued, over the 64 KiB budget", q)
	}
	gate.open()
	// The drops are told after the messages queued before them; the
	// receiver may have taken some before the pump dropped the rest, so
	// they can come as more than one gap.
	got, told, gaps := 0, 0, 0
	for got+told < n {
		g, gap := readBurst(t, member, "burst")
		if gap["room"] != "burst" || gap["reason"] != clientwire.GapOverload {
			t.Fatalf("gap %v", gap)
		}
		got += g
		told += int(gap["dropped"].(float64))
		gaps++
	}
	if got+told != n || told != int(dropped) {
		t.Fatalf("%d messages and %d gaps telling %d dropped: want %d and %d", got, gaps, told, n-int(dropped), dropped)
	}
	member.send(`{"type":"ping","id":"p"}`)
	member.expect("pong") // nothing more
	if s := in.bp.Stats(); s.Dropped != dropped || s.Received != uint64(got) {
		t.Fatalf("stats %+v: want Dropped %d (counted once), Received %d", s, dropped, got)
	}
}

// nats.go's own drops (the subscriptions' shared channel full) are counted
// exactly once each across several slow-consumer episodes, and told exactly
// once (issue 9, defect 7: the error handler added the cumulative count on
// every episode).
func TestNATSSlowConsumerDropsCountedOnce(t *testing.T) {
	ns := startNATS(t, 0)
	bp := New(Options{URLs: []string{ns.ClientURL()}, PendingMsgs: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var delivered, told atomic.Uint64
	if err := bp.Start("a", router.Host{
		Deliver: func(rm *router.Remote) {
			if rm.Dropped > 0 {
				told.Add(rm.Dropped)
				return
			}
			delivered.Add(1)
		},
		HasLocal:  func(kind router.Kind, name string) bool { return kind == router.KindRoom && name == "r" },
		EachLocal: func(fn func(router.Kind, string)) { fn(router.KindRoom, "r") },
		Resumed:   func() {},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bp.Close() })
	bp.Interest(router.KindRoom, "r")
	waitUntil(t, "the subscription", func() bool { return bp.Stats().Subscriptions == 2 })
	if err := bp.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	svc := service(t, ns.ClientURL())
	sent, episodes := uint64(0), 0
	payload := []byte(`{"data":1}`)
	for burst := 0; episodes < 3 && burst < 50; burst++ {
		before := bp.Stats().Dropped
		for range 5000 {
			mustPublish(t, svc, "gw.room.r", payload)
		}
		sent += 5000
		if err := svc.Flush(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "every message delivered or counted", func() bool { return delivered.Load()+bp.Stats().Dropped >= sent })
		s := bp.Stats()
		if got := delivered.Load() + s.Dropped; got != sent {
			t.Fatalf("burst %d: delivered %d + dropped %d = %d, sent %d", burst, delivered.Load(), s.Dropped, got, sent)
		}
		if s.Dropped > before {
			episodes++
		}
	}
	if episodes < 2 {
		t.Fatalf("only %d bursts overflowed the one-message channel", episodes)
	}
	waitUntil(t, "every drop told", func() bool { return told.Load() >= bp.Stats().Dropped })
	if told.Load() != bp.Stats().Dropped {
		t.Fatalf("told %d drops, counted %d", told.Load(), bp.Stats().Dropped)
	}
}

// dialLoop connects user and returns its client and the loop it is on.
func (in *instance) dialLoop(user string) (*client, int) {
	in.t.Helper()
	tok, err := auth.MintHS256(secret, auth.Claims{Sub: user}, time.Hour)
	if err != nil {
		in.t.Fatal(err)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		in.t.Fatalf("dial: %v", err)
	}
	in.t.Cleanup(func() { _ = c.Close() })
	cl := &client{t: in.t, conn: c}
	ok := cl.expect("auth:ok")
	id, err := strconv.ParseUint(ok["conn"].(string), 36, 64)
	if err != nil {
		in.t.Fatal(err)
	}
	return cl, int(id >> 48)
}

var _ = json.Marshal

// A gap in one room's live sequence (republishes missed while the NATS
// connection was down) is filled off the receiver goroutine: while the
// fill is stalled, another room's live messages are delivered; the gapped
// room's later messages wait, and come after the filled ones, in order
// (issue 9, defect 8).
func TestHistoryGapFillDoesNotBlockOtherRooms(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{}))
	b, _ := startGW(t, "b", histOpts(ns.ClientURL(), HistoryOptions{}))
	alice, bob, carol := a.dial("alice"), b.dial("bob"), b.dial("carol")
	alice.join("g")
	alice.join("other")
	bob.join("g")
	carol.join("other")
	a.waitSubscribed(4)
	b.waitSubscribed(5)
	entered, release := make(chan string, 4), make(chan struct{})
	hook := func(room string) {
		entered <- room
		<-release
	}
	b.bp.hist.fillHook.Store(&hook)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	alice.send(`{"type":"message","room":"g","data":0}`)
	first := bob.expectRoomMsg("g", 0)
	id, err := b.bp.Conn().GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ { // stored while b is away: b misses their republish
		alice.send(fmt.Sprintf(`{"type":"message","room":"g","data":%d,"id":"m%d"}`, i, i))
		alice.expect("ack")
	}
	waitUntil(t, "b to reconnect", func() bool { return b.bp.Stats().Reconnects > 0 && b.router.Ready() })
	if err := b.bp.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	alice.send(`{"type":"message","room":"g","data":4}`) // reveals the gap: the fill stalls
	select {
	case room := <-entered:
		if room != "g" {
			t.Fatalf("fill of room %q", room)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no gap fill started")
	}
	alice.send(`{"type":"message","room":"g","data":5}`)          // parked behind the fill
	alice.send(`{"type":"message","room":"other","data":"live"}`) // another room: not held up
	// b lost NATS above: its clients were told (reason backplane).
	m := carol.expect("gap")
	if m["reason"] != "backplane" {
		t.Fatalf("carol: %v, want the backplane gap", m)
	}
	if m := carol.expect("message"); m["room"] != "other" || m["data"] != "live" {
		t.Fatalf("carol: %v", m)
	}
	if st := b.bp.HistoryStats(); st.Gaps != 1 || st.GapFillErrors != 0 {
		t.Fatalf("history stats %+v while the fill is stalled", st)
	}
	unblock()
	last := first.seq
	for i := 1; i <= 5; i++ {
		d := bob.expectRoomMsg("g", last)
		if d.data != float64(i) {
			t.Fatalf("after the gap %+v, want data %d", d, i)
		}
		last = d.seq
	}
	if st := b.bp.HistoryStats(); st.Gaps != 1 || st.GapFillErrors != 0 || st.Duplicates != 0 {
		t.Fatalf("history stats %+v, want one gap filled", st)
	}
	bob.quiet()
}

// A service message whose data has a number beyond float64 is refused by
// the receiver like any undecodable payload (counted), so no receiver gets
// it, JSON or msgpack; the next good one is delivered (issue 9, defect 10).
func TestNATSServiceOutOfRangeNumberRefused(t *testing.T) {
	ns := startNATS(t, 0)
	in := startFlowGW(t, "a", Options{URLs: []string{ns.ClientURL()}}, engine.Options{Loops: 1}, nil)
	c := in.dial("c")
	c.join("r")
	in.waitSubscribed(3)
	svc := service(t, ns.ClientURL())
	mustPublish(t, svc, "gw.room.r", []byte(`{"data":{"x":1e400},"from":"svc"}`))
	mustPublish(t, svc, "gw.room.r", []byte(`{"data":"fine","from":"svc"}`))
	if m := c.expect("message"); m["data"] != "fine" {
		t.Fatalf("got %v", m)
	}
	if s := in.bp.Stats(); s.DecodeErrors != 1 || s.Received != 1 {
		t.Fatalf("stats %+v: want the out-of-range message counted as a decode error", s)
	}
}
