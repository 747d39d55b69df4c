package natsbp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
)

// startJS runs a real NATS server with JetStream keeping files in dir.
func startJS(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: dir, ServerName: "hist"})
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// startGW is startInstance with router history mode following the
// backplane's, and a stop function for restarts (also run at cleanup).
func startGW(t testing.TB, id string, bo Options) (*instance, func()) {
	t.Helper()
	bo.ReconnectWait = 50 * time.Millisecond
	bo.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	bp := New(bo)
	r, err := router.New(router.Options{InstanceID: id, Auth: auth.Config{Secret: secret}, Backplane: bp, History: bo.History.Enabled})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Addr: "127.0.0.1:0", Loops: 2}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(e); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = e.Stop(ctx)
			_ = r.Close()
		})
	}
	t.Cleanup(stop)
	return &instance{t: t, eng: e, router: r, bp: bp}, stop
}

// delivered is what a test remembers of a room message.
type delivered struct {
	seq  uint64
	id   string
	data any
}

// expectRoomMsg reads a room message that must carry a seq above after.
func (c *client) expectRoomMsg(room string, after uint64) delivered {
	c.t.Helper()
	m := c.expectPastGap("message") // history fills a backplane outage; the gap may come first
	s, ok := m["seq"].(float64)
	if !ok || m["room"] != room {
		c.t.Fatalf("room message %v: want room %q with a seq", m, room)
	}
	d := delivered{seq: uint64(s), id: m["id"].(string), data: m["data"]}
	if d.seq <= after {
		c.t.Fatalf("message %v: seq %d not above %d", m, d.seq, after)
	}
	return d
}

func (c *client) join(room string) {
	c.t.Helper()
	c.send(`{"type":"join","room":"` + room + `"}`)
	c.expect("joined")
}

func (c *client) expectResumed(room string, seq uint64, recovered bool) {
	c.t.Helper()
	m := c.expect("resumed")
	if m["room"] != room || m["seq"] != float64(seq) || m["recovered"] != recovered {
		t := fmt.Sprintf("resumed %v, want room %s seq %d recovered %v", m, room, seq, recovered)
		c.t.Fatal(t)
	}
}

func histOpts(url string, h HistoryOptions) Options {
	h.Enabled = true
	return Options{URLs: []string{url}, History: h}
}

func TestHistoryResumeAcrossInstances(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{}))
	b, _ := startGW(t, "b", histOpts(ns.ClientURL(), HistoryOptions{}))
	alice := a.dial("alice")
	bob, carol := b.dial("bob"), b.dial("carol")
	for _, c := range []*client{alice, bob, carol} {
		c.join("chat")
	}
	a.waitSubscribed(3) // gw.all, gw.user.alice, gw.live.room.chat
	b.waitSubscribed(4)

	send := func(from, to int) {
		for i := from; i < to; i++ {
			alice.send(fmt.Sprintf(`{"type":"message","room":"chat","data":%d,"id":"m%d"}`, i, i))
		}
		for i := from; i < to; i++ {
			// Acked once stored, in order; never her own message back.
			if m := alice.expect("ack"); m["id"] != fmt.Sprintf("m%d", i) {
				t.Fatalf("ack %v, want m%d", m, i)
			}
		}
	}
	send(0, 3)
	var last uint64
	for i := 0; i < 3; i++ {
		db := bob.expectRoomMsg("chat", last)
		dc := carol.expectRoomMsg("chat", last)
		if db != dc || db.data != float64(i) {
			t.Fatalf("message %d: bob %+v carol %+v: want the same seq and id, data %d", i, db, dc, i)
		}
		last = db.seq
	}
	bobLast := last

	// Bob drops; five messages and one from a service (core NATS on
	// gw.room.chat) go by; carol sees them live.
	_ = bob.conn.Close()
	send(3, 8)
	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Publish("gw.room.chat", []byte(`{"data":"svc","from":"desk"}`)); err != nil {
		t.Fatal(err)
	}
	var missed []delivered
	for i := 0; i < 6; i++ {
		d := carol.expectRoomMsg("chat", last)
		missed = append(missed, d)
		last = d.seq
	}
	if missed[5].data != "svc" || missed[5].id != fmt.Sprintf("seq-%d", missed[5].seq) {
		t.Fatalf("service message %+v: want data svc and id seq-<seq>", missed[5])
	}
	if d := alice.expectRoomMsg("chat", 0); d != missed[5] {
		t.Fatalf("service message to alice %+v, want %+v", d, missed[5])
	}

	// Bob comes back on the other instance: exactly the missed ones, in order.
	bob2 := a.dial("bob")
	bob2.join("chat")
	bob2.send(fmt.Sprintf(`{"type":"resume","room":"chat","since":%d,"id":"r1"}`, bobLast))
	for i, want := range missed {
		if got := bob2.expectRoomMsg("chat", 0); got != want {
			t.Fatalf("replayed %d: %+v, want %+v", i, got, want)
		}
	}
	m := bob2.expect("resumed")
	if m["seq"] != float64(last) || m["recovered"] != true || m["id"] != "r1" || m["room"] != "chat" {
		t.Fatalf("resumed %v, want seq %d recovered true id r1", m, last)
	}

	// Live again, for both instances, and the replay left nothing behind.
	send(8, 9)
	d2, dc := bob2.expectRoomMsg("chat", last), carol.expectRoomMsg("chat", last)
	if d2 != dc {
		t.Fatalf("live after resume: bob %+v carol %+v", d2, dc)
	}
	// A resume with nothing missed answers at once.
	bob2.send(fmt.Sprintf(`{"type":"resume","room":"chat","since":%d}`, d2.seq))
	bob2.expectResumed("chat", d2.seq, true)
	if st := a.bp.HistoryStats(); st.Replays != 2 || st.Stored != 9 || st.Gaps != 0 {
		t.Fatalf("history stats %+v", st)
	}
	bob2.quiet()
	alice.quiet()
}

func TestHistoryResumeTooOld(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{MaxMsgs: 5}))
	b, _ := startGW(t, "b", histOpts(ns.ClientURL(), HistoryOptions{MaxMsgs: 5}))
	alice, bob := a.dial("alice"), b.dial("bob")
	alice.join("r")
	bob.join("r")
	a.waitSubscribed(3)
	b.waitSubscribed(3)
	alice.send(`{"type":"message","room":"r","data":0,"id":"m0"}`)
	alice.expect("ack")
	seen := bob.expectRoomMsg("r", 0)
	_ = bob.conn.Close()
	for i := 1; i <= 10; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"r","data":%d,"id":"m%d"}`, i, i))
		alice.expect("ack")
	}
	bob2 := b.dial("bob")
	bob2.join("r")
	// since's message is gone (5 kept of 11): recovered false, and the
	// replay is what is still kept after since: the newest five.
	bob2.send(fmt.Sprintf(`{"type":"resume","room":"r","since":%d}`, seen.seq))
	var kept []delivered
	last := seen.seq
	for i := 6; i <= 10; i++ {
		d := bob2.expectRoomMsg("r", last)
		if d.data != float64(i) {
			t.Fatalf("replayed %+v, want data %d", d, i)
		}
		kept = append(kept, d)
		last = d.seq
	}
	bob2.expectResumed("r", last, false)
	// Resuming from the oldest kept message is complete again.
	bob2.send(fmt.Sprintf(`{"type":"resume","room":"r","since":%d}`, kept[0].seq))
	for _, want := range kept[1:] {
		if got := bob2.expectRoomMsg("r", 0); got != want {
			t.Fatalf("replayed %+v, want %+v", got, want)
		}
	}
	bob2.expectResumed("r", last, true)
	// From the beginning: the stream has deleted messages, so not complete.
	bob2.send(`{"type":"resume","room":"r","since":0}`)
	for _, want := range kept {
		if got := bob2.expectRoomMsg("r", 0); got != want {
			t.Fatalf("replayed %+v, want %+v", got, want)
		}
	}
	bob2.expectResumed("r", last, false)
	bob2.quiet()
}

func TestHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ns1, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: dir, ServerName: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns1.Shutdown()
	h := HistoryOptions{Enabled: true}
	a, stopA := startGW(t, "a", Options{Server: ns1, History: h})
	alice, bob := a.dial("alice"), a.dial("bob")
	alice.join("ops")
	bob.join("ops")
	a.waitSubscribed(4)
	var seen []delivered
	for i := 0; i < 3; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"ops","data":%d,"id":"m%d"}`, i, i))
		alice.expect("ack")
		seen = append(seen, bob.expectRoomMsg("ops", 0))
	}
	_ = bob.conn.Close()
	_ = alice.conn.Close()
	stopA()
	ns1.Shutdown()
	ns1.WaitForShutdown()

	ns2, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: dir, ServerName: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Shutdown()
	a2, _ := startGW(t, "a2", Options{Server: ns2, History: h})
	bob2 := a2.dial("bob")
	bob2.join("ops")
	bob2.send(fmt.Sprintf(`{"type":"resume","room":"ops","since":%d}`, seen[0].seq))
	for _, want := range seen[1:] {
		if got := bob2.expectRoomMsg("ops", 0); got != want {
			t.Fatalf("replayed after restart %+v, want %+v", got, want)
		}
	}
	bob2.expectResumed("ops", seen[2].seq, true)
	// Nothing was ever deleted: a resume from 0 is complete.
	bob2.send(`{"type":"resume","room":"ops","since":0}`)
	for _, want := range seen {
		if got := bob2.expectRoomMsg("ops", 0); got != want {
			t.Fatalf("replayed from 0 %+v, want %+v", got, want)
		}
	}
	bob2.expectResumed("ops", seen[2].seq, true)
	// Sequences go on where they stopped.
	alice2 := a2.dial("alice")
	alice2.join("ops")
	alice2.send(`{"type":"message","room":"ops","data":"after"}`)
	if d := bob2.expectRoomMsg("ops", seen[2].seq); d.data != "after" {
		t.Fatalf("after restart %+v", d)
	}
}

// TestHistoryResumeHoldsLive: live messages arriving while a replay is in
// flight come after it, without repeats, and a resume of a room that has
// lost messages never hides it.
func TestHistoryResumeHoldsLive(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{ReplayBatch: 2}))
	alice, bob := a.dial("alice"), a.dial("bob")
	alice.join("busy")
	bob.join("busy")
	a.waitSubscribed(4)
	const n = 40
	var all []delivered
	for i := 0; i < n; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"busy","data":%d}`, i))
	}
	for i := 0; i < n; i++ {
		all = append(all, bob.expectRoomMsg("busy", 0))
	}
	// Resume from the first while alice keeps sending: bob must see every
	// seq after since exactly once, in increasing order, then resumed, then
	// (possibly) more live ones.
	bob.send(fmt.Sprintf(`{"type":"resume","room":"busy","since":%d}`, all[0].seq))
	for i := n; i < n+20; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"busy","data":%d}`, i))
	}
	last := all[0].seq
	count := 0
	resumed := false
	for count < n+20-1 {
		m := bob.expect2("message", "resumed")
		if m["type"] == "resumed" {
			if resumed || m["recovered"] != true || uint64(m["seq"].(float64)) != last {
				t.Fatalf("resumed %v after seq %d", m, last)
			}
			resumed = true
			continue
		}
		s := uint64(m["seq"].(float64))
		if s <= last {
			t.Fatalf("seq %d after %d: out of order or repeated", s, last)
		}
		last = s
		count++
	}
	if !resumed {
		bob.expect("resumed")
	}
	bob.quiet()
}

// expect2 reads the next message, which must be of one of two types.
func (c *client) expect2(a, b string) map[string]any {
	c.t.Helper()
	m := c.next(5 * time.Second)
	if m == nil || (m["type"] != a && m["type"] != b) {
		c.t.Fatalf("got %v, want %q or %q", m, a, b)
	}
	return m
}

// TestHistoryLiveGapFilled: republished messages an instance missed while
// its NATS connection was down are filled from the stream, in order, before
// the next live one.
func TestHistoryLiveGapFilled(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{}))
	b, _ := startGW(t, "b", histOpts(ns.ClientURL(), HistoryOptions{}))
	alice, bob := a.dial("alice"), b.dial("bob")
	alice.join("g")
	bob.join("g")
	a.waitSubscribed(3)
	b.waitSubscribed(3)
	alice.send(`{"type":"message","room":"g","data":0}`)
	first := bob.expectRoomMsg("g", 0)

	id, err := b.bp.Conn().GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ { // b is reconnecting (50ms+) meanwhile
		alice.send(fmt.Sprintf(`{"type":"message","room":"g","data":%d,"id":"m%d"}`, i, i))
		alice.expect("ack")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.bp.Stats().Reconnects == 0 || !b.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("b did not reconnect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := b.bp.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	alice.send(`{"type":"message","room":"g","data":4}`)
	last := first.seq
	for i := 1; i <= 4; i++ {
		d := bob.expectRoomMsg("g", last)
		if d.data != float64(i) {
			t.Fatalf("after the outage %+v, want data %d", d, i)
		}
		last = d.seq
	}
	if st := b.bp.HistoryStats(); st.Gaps != 1 || st.GapFillErrors != 0 {
		t.Fatalf("history stats %+v, want one gap filled", st)
	}
	bob.quiet()
}
