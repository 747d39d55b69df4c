package natsbp

import (
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

func (c *client) presence(room string) ([]string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.send(`{"type":"presence","room":"` + room + `","id":"p"}`)
	m := c.expectPastEvents("presence")
	took := time.Since(start)
	if m["room"] != room || m["id"] != "p" {
		c.t.Fatalf("presence %v", m)
	}
	users := []string{}
	for _, u := range m["users"].([]any) {
		users = append(users, u.(string))
	}
	return users, took
}

// expectPastEvents is expect, skipping user:joined / user:left.
func (c *client) expectPastEvents(typ string) map[string]any {
	c.t.Helper()
	m := c.next(5 * time.Second)
	for m != nil && m["type"] != typ && (m["type"] == "user:joined" || m["type"] == "user:left") {
		m = c.next(5 * time.Second)
	}
	if m == nil || m["type"] != typ {
		c.t.Fatalf("got %v, want %q", m, typ)
	}
	return m
}

// expectPastGapOrEvents waits for typ, skipping the backplane's gap
// notices and the other presence event.
func (c *client) expectPastGapOrEvents(typ string) map[string]any {
	c.t.Helper()
	for {
		m := c.next(15 * time.Second)
		if m == nil {
			c.t.Fatalf("no %s", typ)
		}
		if m["type"] == typ {
			return m
		}
		if m["type"] != "gap" && m["type"] != "user:joined" && m["type"] != "user:left" {
			c.t.Fatalf("got %v, want %q", m, typ)
		}
	}
}

// eventuallyPresence polls c's presence of room until it is want.
func (c *client) eventuallyPresence(room string, want ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	var got []string
	for time.Since(start) < 10*time.Second {
		if got, _ = c.presence(room); reflect.DeepEqual(got, append([]string{}, want...)) {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("presence of %s %v, want %v", room, got, want)
	return 0
}

// joinInOrder joins first (user firstUser, the room's first member on its instance), waits
// until second's instance sees it in the room's presence (first's instance
// tracks the room), then joins second: second's join is then an arrival
// there, told as user:joined. Without the wait the two joins may race, and
// first's instance may take second as present before (docs/architecture.md,
// "Known windows").
func joinInOrder(room string, first *client, firstUser string, second *client) {
	first.t.Helper()
	first.join(room)
	second.eventuallyPresence(room, firstUser)
	second.join(room)
}

func presenceInstance(t *testing.T, id string, o Options) *instance {
	return startInstanceWith(t, id, o, 2, func(ro *router.Options) { ro.PresenceEvents = true })
}

// Presence answers from the replicated tracker: every instance agrees, a
// room nobody here is in is asked once, and an instance that loses NATS is
// dropped after the instance timeout.
func TestPresenceAcrossInstances(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 600 * time.Millisecond}
	a := presenceInstance(t, "a", o)
	b := presenceInstance(t, "b", o)
	c := presenceInstance(t, "c", o)
	alice, carol := a.dial("alice"), a.dial("carol")
	bob, dave := b.dial("bob"), b.dial("dave")
	erin := c.dial("erin")
	for _, cl := range []*client{alice, bob, dave, erin} {
		cl.join("lobby")
	}
	bob2 := c.dial("bob") // the same user on two instances counts once
	bob2.join("lobby")

	want := []string{"alice", "bob", "dave", "erin"}
	for _, asker := range []*client{carol, bob, erin} {
		asker.eventuallyPresence("lobby", want...)
	}
	// Once propagated, an answer takes no window: well under the old 100ms.
	if _, took := alice.presence("lobby"); took > 5*time.Second {
		t.Fatalf("presence took %v", took)
	}
	if got, _ := carol.presence("empty"); len(got) != 0 {
		t.Fatalf("empty room: %v %+v %+v", got, a.router.PresenceStats(), a.bp.PresenceStats())
	}
	// A room only c tracks, asked from a: one query, the first answer.
	erin.join("side")
	carol.eventuallyPresence("side", "erin")

	// c loses NATS: its users leave after the instance timeout, except bob,
	// who is still on b.
	c.bp.Conn().Close()
	took := carol.eventuallyPresence("lobby", "alice", "bob", "dave")
	t.Logf("c's users gone from a's presence %v after c lost NATS (instance timeout 600ms)", took)
	if s := a.router.PresenceStats(); s.InstancesLost == 0 {
		t.Fatalf("presence stats %+v: no instance lost", s)
	}
	// b stops (graceful): its connections close, their users leave.
	b.stop()
	carol.eventuallyPresence("lobby", "alice")
	// Without history, resume is unavailable.
	alice.send(`{"type":"resume","room":"lobby","since":1,"id":"r"}`)
	if m := alice.expectPastEvents("error"); m["code"] != "unavailable" || m["id"] != "r" {
		t.Fatalf("resume without history: %v", m)
	}
	if s := a.bp.PresenceStats(); s.Sent == 0 || s.Received == 0 || s.DecodeErrors != 0 {
		t.Fatalf("presence transport stats %+v", s)
	}
}

func TestPresenceNATSDown(t *testing.T) {
	ns := startNATS(t, 0)
	a, _ := startGW(t, "a", Options{URLs: []string{ns.ClientURL()}})
	alice := a.dial("alice")
	alice.join("r")
	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for a.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("still ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	alice.send(`{"type":"presence","room":"r","id":"p"}`)
	if m := alice.expect("error"); m["code"] != "unavailable" || m["id"] != "p" {
		t.Fatalf("presence with NATS down: %v, want error unavailable", m)
	}
}

// Presence events across instances: user:joined and user:left once per
// user, on every instance, not for a second device elsewhere, and not for
// a connection that moves to another instance within the grace.
func TestPresenceEventsAcrossInstances(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 3 * time.Second} // grace: 1s
	a := presenceInstance(t, "a", o)
	b := presenceInstance(t, "b", o)
	wa, wb := a.dial("wa"), b.dial("wb")
	joinInOrder("room", wa, "wa", wb)
	wa.expect("user:joined") // wb
	wb.eventuallyPresence("room", "wa", "wb")
	event := func(typ, user string) {
		t.Helper()
		for _, w := range []*client{wa, wb} {
			m := w.expect(typ)
			if m["room"] != "room" || m["user"] != user {
				t.Fatalf("%v, want %s %s", m, typ, user)
			}
		}
	}
	u1 := a.dial("u")
	u1.join("room")
	event("user:joined", "u")
	u2 := b.dial("u") // second device on the other instance: nothing
	u2.join("room")
	wa.eventuallyPresence("room", "u", "wa", "wb")
	u1.send(`{"type":"leave","room":"room"}`)
	u1.expect("left")
	// the reconnect: u2 closes on b, u3 joins on a within the grace
	u2.conn.Close()
	u3 := a.dial("u")
	u3.join("room")
	u3.send(`{"type":"leave","room":"room"}`)
	u3.expect("left")
	event("user:left", "u") // the only event since the join
}

// A partition that heals re-syncs without a restart: with NATS gone past
// the instance timeout, each instance drops the other's users (user:left);
// once NATS is back, the state transfers bring them back (user:joined).
func TestPresencePartitionHeals(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 600 * time.Millisecond}
	a := presenceInstance(t, "a", o)
	b := presenceInstance(t, "b", o)
	alice, bob := a.dial("alice"), b.dial("bob")
	joinInOrder("lobby", alice, "alice", bob)
	alice.expectPastEvents("user:joined")
	bob.eventuallyPresence("lobby", "alice", "bob")
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	other := map[*client]string{alice: "bob", bob: "alice"}
	for _, c := range []*client{alice, bob} {
		if m := c.expectPastGapOrEvents("user:left"); m["user"] != other[c] {
			t.Fatalf("%v, want user:left %s", m, other[c])
		}
	}
	start := time.Now()
	startNATS(t, port)
	for _, c := range []*client{alice, bob} {
		if m := c.expectPastGapOrEvents("user:joined"); m["user"] != other[c] {
			t.Fatalf("%v, want user:joined %s", m, other[c])
		}
	}
	t.Logf("users back %v after NATS returned", time.Since(start))
	alice.eventuallyPresence("lobby", "alice", "bob")
	bob.eventuallyPresence("lobby", "alice", "bob")
	sa, sb := a.router.PresenceStats(), b.router.PresenceStats()
	if sa.InstancesLost == 0 || sb.InstancesLost == 0 || sa.Resyncs+sb.Resyncs == 0 {
		t.Fatalf("stats %+v %+v: want each to lose the other, and a resync", sa, sb)
	}
}

// A presence message above the server's max payload is refused (and
// counted), never cut; a full chunk of state transfer (the tracker's
// bound: 128 KiB of names) and a capped answer (5000 names of 128 bytes)
// fit.
func TestPresenceMessageSizeBound(t *testing.T) {
	ns := startNATS(t, 0)
	a := presenceInstance(t, "a", Options{URLs: []string{ns.ClientURL()}})
	watch, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	sub, err := watch.SubscribeSync("gw.pres.big")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	msg := func(n int) *router.PresenceMsg {
		m := &router.PresenceMsg{Type: router.PresenceState, Room: "big", From: "a", Inc: 1, Last: true}
		for i := range n {
			m.Entries = append(m.Entries, router.PresenceEntry{User: fmt.Sprintf("%0128d", i), Conns: 1})
		}
		return m
	}
	for _, n := range []int{128 << 10 / 128, router.MaxPresenceMaxUsers} {
		if err := a.bp.SendPresence(msg(n), ""); err != nil {
			t.Fatalf("%d names: %v", n, err)
		}
		got, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%d names: %v", n, err)
		}
		t.Logf("%d names of 128 bytes: %d bytes (max payload %d)", n, len(got.Data), a.bp.Conn().MaxPayload())
	}
	over := int(a.bp.Conn().MaxPayload()/128) + 1 // more names than the max payload holds
	if err := a.bp.SendPresence(msg(over), ""); err == nil {
		t.Fatalf("a presence message of %d names of 128 bytes was sent", over)
	}
	if s := a.bp.PresenceStats(); s.TooLarge != 1 {
		t.Fatalf("stats %+v, want one too large", s)
	}
}

// An instance that crashes and comes back under the same id within the
// instance timeout (its heartbeats never stop long enough to drop it)
// announces its new incarnation: the old one's users leave (after the
// grace) although the new one has no members in the room.
func TestPresenceRestartSameID(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 3 * time.Second}
	a := presenceInstance(t, "a", o)
	c := presenceInstance(t, "c", o)
	alice, erin := a.dial("alice"), c.dial("erin")
	alice.join("lobby")
	erin.join("lobby")
	alice.eventuallyPresence("lobby", "alice", "erin")
	c.bp.Conn().Close() // a crash, as the others see it: no leaves sent
	start := time.Now()
	presenceInstance(t, "c", o)
	if m := alice.expectPastEvents("user:left"); m["user"] != "erin" {
		t.Fatalf("%v, want user:left erin", m)
	}
	took := time.Since(start)
	t.Logf("the old incarnation's user left %v after the restart (instance timeout 3s)", took)
	if s := a.router.PresenceStats(); s.InstancesLost != 0 {
		t.Fatalf("stats %+v: c was dropped as lost, not replaced by its new incarnation", s)
	}
}

// A user who leaves while its instance is cut off from NATS for less than
// the instance timeout: the leave could not go out, the instance is not
// dropped (its heartbeats resume), and it no longer tracks the room; it
// tells the others once NATS is back.
func TestPresenceLeaveDuringOutage(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 10 * time.Second}
	a := presenceInstance(t, "a", o)
	b := presenceInstance(t, "b", o)
	alice, bob := a.dial("alice"), b.dial("bob")
	joinInOrder("lobby", alice, "alice", bob)
	alice.expectPastEvents("user:joined")
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for b.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("b still ready without NATS")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bob.send(`{"type":"leave","room":"lobby"}`)
	bob.expectPastGapOrEvents("left")
	startNATS(t, port)
	if m := alice.expectPastGapOrEvents("user:left"); m["user"] != "bob" {
		t.Fatalf("%v, want user:left bob", m)
	}
	alice.eventuallyPresence("lobby", "alice")
	if s := a.router.PresenceStats(); s.InstancesLost != 0 {
		t.Fatalf("stats %+v: b was dropped as lost; this test is about the resent leave", s)
	}
}

// A user joining an instance that has just started tracking a room, while
// that instance's initial ask is unanswered, is not news when it is
// present on another instance: the room's first member there hears no
// user:joined for it. A user nobody had is news, once, when the answer is
// in. b's presence input is held (testHold) at a's answer, so the joins
// land in the window every time.
func TestPresenceJoinBeforeInitialAnswers(t *testing.T) {
	ns := startNATS(t, 0)
	// The instance timeout (the wait's deadline) is far above expect's 5s:
	// the events come because the answer arrived, not the deadline.
	o := Options{URLs: []string{ns.ClientURL()}, InstanceTimeout: 30 * time.Second}
	a := presenceInstance(t, "a", o)
	b := presenceInstance(t, "b", o)
	ua := a.dial("u")
	ua.join("r")
	q := b.dial("q")               // not in r: asks a until a tracks r
	q.eventuallyPresence("r", "u") // a tracks r

	held, release := make(chan struct{}), make(chan struct{})
	var heldOnce, releaseOnce sync.Once
	hold := func(m *router.PresenceMsg) {
		if m.Type == router.PresenceState && m.Room == "r" && !m.Ask && m.Query != 0 {
			heldOnce.Do(func() {
				close(held)
				<-release
			})
		}
	}
	b.bp.pres.testHold.Store(&hold)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the instances stop

	m := b.dial("m")
	m.join("r") // b starts tracking r and asks; a's answer is held
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("a's answer to b's initial ask never came")
	}
	ub := b.dial("u") // u's second device: u is on a
	ub.join("r")
	g := b.dial("g") // nobody had g
	g.join("r")
	q.eventuallyPresence("r", "g", "m", "u") // b's presence goroutine applied both joins
	releaseOnce.Do(func() { close(release) })
	h := a.dial("h") // a user joining after the answer: news at once
	h.join("r")
	for _, want := range []string{"g", "h"} {
		if ev := m.expect("user:joined"); ev["room"] != "r" || ev["user"] != want {
			t.Fatalf("m got %v, want user:joined %s (u was present on a)", ev, want)
		}
	}
	q.eventuallyPresence("r", "g", "h", "m", "u")
}
