package router

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"testing"
)

// trackNet is a test network of trackers: it carries what setLocal returns
// the way the presence service does (a new room: its state with Ask, and
// the answers back to the asker), synchronously.
type trackNet struct {
	t   *testing.T
	trs map[string]*tracker
	now int64
	q   uint64
	// events per instance, "joined alice" / "left alice"
	events map[string][]string
}

const (
	testGrace   = 100
	testTimeout = 300 // the initial ask's deadline
)

func newTrackNet(t *testing.T, ids ...string) *trackNet {
	n := &trackNet{t: t, trs: map[string]*tracker{}, events: map[string][]string{}, now: 1000}
	for _, id := range ids {
		n.trs[id] = newTracker(id, 1, testGrace)
	}
	return n
}

func (n *trackNet) collect() {
	for id, tr := range n.trs {
		for _, c := range tr.takeChanges() {
			ev := "left " + c.user
			if c.joined {
				ev = "joined " + c.user
			}
			n.events[id] = append(n.events[id], c.room+" "+ev)
		}
	}
}

// broadcast hands m to every other tracker tracking the room; an ask is
// answered with the receiver's own state.
func (n *trackNet) broadcast(m *PresenceMsg) {
	for id, tr := range n.trs {
		if id == m.From || !tr.tracked(m.Room) {
			continue
		}
		switch m.Type {
		case PresenceDelta:
			tr.applyDelta(m, n.now)
		case PresenceState:
			tr.applyState(m, n.now)
			if m.Last && m.Ask {
				for _, a := range tr.ownState(m.Room, false, m.Query, 2, 1<<20) {
					n.trs[m.From].applyState(a, n.now)
				}
			}
		}
	}
	n.collect()
}

func (n *trackNet) set(id, room, user string, conns int) {
	tr := n.trs[id]
	delta, started, _ := tr.setLocal(room, user, conns, 0, n.now)
	if started {
		n.q++
		tr.beginInitial(room, n.q, n.now+testTimeout)
		answered := false
		for id2, tr2 := range n.trs {
			answered = answered || (id2 != id && tr2.tracked(room))
		}
		for _, m := range tr.ownState(room, true, n.q, 2, 1<<20) {
			n.broadcast(m)
		}
		if !answered { // NATS's no responders
			tr.noAnswer(n.q, n.now)
			n.collect()
		}
		return
	}
	if delta != nil {
		n.broadcast(delta)
	}
	n.collect()
}

func (n *trackNet) advance(d int64) {
	n.now += d
	for _, tr := range n.trs {
		tr.expire(n.now)
		tr.endConfirms(n.now)
		tr.endInitials(n.now)
	}
	n.collect()
}

func (n *trackNet) wantUsers(room string, want ...string) {
	n.t.Helper()
	for id, tr := range n.trs {
		if !tr.tracked(room) {
			continue
		}
		got, truncated := tr.users(room, 0)
		if !reflect.DeepEqual(got, append([]string{}, want...)) || truncated {
			n.t.Fatalf("%s: users of %s %v, want %v", id, room, got, want)
		}
	}
}

func (n *trackNet) wantEvents(id string, want ...string) {
	n.t.Helper()
	got := n.events[id]
	n.events[id] = nil
	if !reflect.DeepEqual(got, want) {
		n.t.Fatalf("%s: events %q, want %q", id, got, want)
	}
}

func TestTrackerJoinLeaveAcrossInstances(t *testing.T) {
	n := newTrackNet(t, "a", "b", "c")
	n.set("a", "r", "watcher", 1)
	n.wantEvents("a", "r joined watcher")
	n.set("b", "r", "bob", 1) // b's initial state: a hears bob join, b hears nothing of watcher
	n.wantEvents("a", "r joined bob")
	n.wantEvents("b", "r joined bob")
	n.wantUsers("r", "bob", "watcher")
	n.set("c", "r", "bob", 1) // bob's second device, elsewhere: no event on a or b
	n.set("c", "r", "bob", 2)
	n.wantEvents("a")
	n.wantEvents("b")
	// c started tracking r with bob: before its initial transfer it takes
	// bob for new, but its only local member is the joining connection,
	// which is not told (presenceChange.exclude).
	n.wantEvents("c", "r joined bob")
	if u, c := n.trs["a"].stats("r"); u != 2 || c != 4 {
		t.Fatalf("stats %d users %d conns, want 2 and 4", u, c)
	}
	n.set("b", "r", "bob", 0) // b had only bob: it stops tracking the room
	if n.trs["b"].tracked("r") {
		t.Fatal("b still tracks r without local members")
	}
	n.wantUsers("r", "bob", "watcher")
	n.set("c", "r", "bob", 0) // bob's last connection anywhere: absent at once, left after the grace
	n.wantUsers("r", "watcher")
	n.wantEvents("a")
	n.advance(testGrace + 1)
	n.wantEvents("a", "r left bob")
	if _, p := n.trs["a"].size(); p != 1 {
		t.Fatalf("a keeps %d pairs, want 1", p)
	}
}

// A user whose connection moves to another instance within the grace
// makes no left/joined pair, in either order.
func TestTrackerReconnectWithinGrace(t *testing.T) {
	n := newTrackNet(t, "a", "b", "c")
	n.set("a", "r", "watcher", 1)
	n.set("b", "r", "keep", 1)
	n.set("c", "r", "keep2", 1)
	n.set("b", "r", "u", 1)
	n.collect()
	for _, id := range []string{"a", "b", "c"} {
		n.events[id] = nil
	}
	// old closes first, new joins within the grace
	n.set("b", "r", "u", 0)
	n.advance(testGrace / 2)
	n.set("c", "r", "u", 1)
	n.advance(testGrace * 2)
	// new joins first, old closes after
	n.set("a", "r", "u", 1)
	n.set("c", "r", "u", 0)
	n.advance(testGrace * 2)
	for _, id := range []string{"a", "b", "c"} {
		n.wantEvents(id)
	}
	n.wantUsers("r", "keep", "keep2", "u", "watcher")
}

func TestTrackerInstanceLostAndRestarted(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "watcher", 1)
	n.set("b", "r", "bob", 1)
	n.set("b", "r", "carol", 1)
	n.set("a", "r", "carol", 1)
	n.events["a"] = nil
	// b is lost: its users leave at once, except carol, also on a.
	n.trs["a"].dropInstance("b", n.now, false)
	n.collect()
	n.wantEvents("a", "r left bob")
	if got, _ := n.trs["a"].users("r", 0); !reflect.DeepEqual(got, []string{"carol", "watcher"}) {
		t.Fatalf("after b was lost: %v", got)
	}
	// b restarts (a greater incarnation): bob comes back with user:joined.
	n.trs["b"] = newTracker("b", 2, testGrace)
	n.set("b", "r", "bob", 1)
	n.wantEvents("a", "r joined bob")
	// Its old incarnation's messages are stale now.
	old := &PresenceMsg{Type: PresenceDelta, Room: "r", From: "b", Inc: 1, Epoch: 1, Seq: 9, Entries: []PresenceEntry{{User: "zed", Conns: 1}}}
	n.trs["a"].applyDelta(old, n.now)
	n.collect()
	n.wantEvents("a")
	// A restart that forgot its users: they leave after the grace.
	n.trs["b"] = newTracker("b", 3, testGrace)
	n.set("b", "r", "dave", 1)
	n.wantEvents("a", "r joined dave")
	n.advance(testGrace + 1)
	n.wantEvents("a", "r left bob")
}

func TestTrackerGapMarksResync(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "watcher", 1)
	n.set("b", "r", "bob", 1)
	n.events["a"] = nil
	b := n.trs["b"]
	d1, _, _ := b.setLocal("r", "x", 1, 0, n.now)
	d2, _, _ := b.setLocal("r", "y", 1, 0, n.now)
	_ = d1                           // lost
	n.trs["a"].applyDelta(d2, n.now) // applied (counts are absolute), and...
	if !n.trs["a"].resync["r"] {
		t.Fatal("a gap in b's sequence did not mark the room for a resync")
	}
	n.collect()
	n.wantEvents("a", "r joined y")
	// The resync: b's state, not silent, repairs it and tells x's arrival.
	for _, m := range b.ownState("r", false, 77, 1, 1<<20) { // one entry per chunk
		n.trs["a"].applyState(m, n.now)
	}
	n.collect()
	n.wantEvents("a", "r joined x")
	n.wantUsers("r", "bob", "watcher", "x", "y")
	// A duplicate (already covered by the state) changes nothing.
	n.trs["a"].applyDelta(d2, n.now)
	n.collect()
	n.wantEvents("a")
}

func TestTrackerStateReplacesAndChunks(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "watcher", 1)
	for i := range 7 {
		n.set("b", "r", fmt.Sprintf("u%d", i), 1)
	}
	msgs := n.trs["b"].ownState("r", false, 5, 3, 1<<20)
	if len(msgs) != 3 || !msgs[2].Last || msgs[0].Last {
		t.Fatalf("7 entries in chunks of 3: %d messages", len(msgs))
	}
	// b's state without u3 (lost its delta): a drops u3 on the replace.
	bState := &PresenceMsg{Type: PresenceState, Room: "r", From: "b", Inc: 1, Epoch: msgs[0].Epoch, Seq: msgs[0].Seq, Last: true}
	for _, m := range msgs {
		for _, e := range m.Entries {
			if e.User != "u3" {
				bState.Entries = append(bState.Entries, e)
			}
		}
	}
	n.events["a"] = nil
	n.trs["a"].applyState(bState, n.now)
	n.advance(testGrace + 1)
	n.wantEvents("a", "r left u3")
	// Name bytes bound the chunks too.
	if got := chunkEntries([]PresenceEntry{{User: "aaaa"}, {User: "bbbb"}, {User: "cccc"}}, 100, 30, func() *PresenceMsg { return &PresenceMsg{} }); len(got) != 2 {
		t.Fatalf("byte-bounded chunks: %d, want 2", len(got))
	}
}

func TestTrackerUsersCapped(t *testing.T) {
	tr := newTracker("a", 1, testGrace)
	for i := range 50 {
		tr.setLocal("big", fmt.Sprintf("user%02d", i), 1, 0, 1)
	}
	got, truncated := tr.users("big", 10)
	if !truncated || len(got) != 10 || got[0] != "user00" || got[9] != "user09" {
		t.Fatalf("capped users %v truncated=%v", got, truncated)
	}
	if got, truncated := tr.users("big", 50); truncated || len(got) != 50 || !slices.IsSorted(got) {
		t.Fatalf("exactly the cap: %d truncated=%v", len(got), truncated)
	}
	q := tr.view(&PresenceMsg{Room: "big", Limit: 5, Query: 3})
	if q.Users != 50 || q.Conns != 50 || !q.Truncated || len(q.Entries) != 5 || q.Query != 3 {
		t.Fatalf("view %+v", q)
	}
	if u, c := tr.stats("none"); u != 0 || c != 0 {
		t.Fatal("stats of an untracked room")
	}
}

// The memory of a room goes with its last local member.
func TestTrackerDropsRoomWithLastLocal(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "alice", 1)
	n.set("b", "r", "bob", 1)
	n.set("a", "r", "alice", 0)
	if r, p := n.trs["a"].size(); r != 0 || p != 0 {
		t.Fatalf("a keeps %d rooms %d pairs after its last member left", r, p)
	}
	if in := n.trs["a"].insts["b"]; in != nil && in.holding != 0 {
		t.Fatalf("a still counts %d holdings of b", in.holding)
	}
}

// BenchmarkTrackerMemory reports the bytes per tracked (room, user) pair:
// one room of 100k users held by three instances.
func BenchmarkTrackerMemory(b *testing.B) {
	const users = 100_000
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("user-%06d", i)
	}
	for b.Loop() {
		before := heapInUse()
		tr := newTracker("a", 1, testGrace)
		tr.setLocal("big", "local", 1, 0, 1)
		for i, u := range names {
			tr.applyDelta(&PresenceMsg{Type: PresenceDelta, Room: "big", From: []string{"b", "c"}[i%2], Inc: 1, Epoch: 1,
				Seq: uint64(i/2 + 1), Entries: []PresenceEntry{{User: u, Conns: 1}}}, 1)
		}
		after := heapInUse()
		runtime.KeepAlive(tr)
		b.ReportMetric(float64(after-before)/users, "bytes/pair")
		if _, p := tr.size(); p != users+1 {
			b.Fatalf("%d pairs", p)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkTrackerPresence100k is the tracker's part of a capped
// `presence` (1000 users) on a room of 100k users right after a change
// (the sorted list is rebuilt), and of presence_stats.
func BenchmarkTrackerPresence100k(b *testing.B) {
	tr := newTracker("a", 1, testGrace)
	for i := range 100_000 {
		tr.setLocal("big", fmt.Sprintf("user-%06d", i), 1, 0, 1)
	}
	b.Run("presence-after-change", func(b *testing.B) {
		n := 0
		for b.Loop() {
			n++
			tr.setLocal("big", "churn", n%2, 0, 1) // a join or a leave
			if users, truncated := tr.users("big", DefaultPresenceMaxUsers); len(users) != DefaultPresenceMaxUsers || !truncated {
				b.Fatal("not capped")
			}
		}
	})
	b.Run("presence-unchanged", func(b *testing.B) {
		for b.Loop() {
			tr.users("big", DefaultPresenceMaxUsers)
		}
	})
	b.Run("presence_stats", func(b *testing.B) {
		for b.Loop() {
			if u, _ := tr.stats("big"); u < 100_000 {
				b.Fatal(u)
			}
		}
	})
}

// A resync's confirmation round: an instance that neither answers nor
// sends a delta by the deadline no longer tracks the room (its leave was
// lost), and what it held there goes; those that answer keep theirs.
func TestTrackerResyncConfirms(t *testing.T) {
	n := newTrackNet(t, "a", "b", "c")
	n.set("a", "r", "watcher", 1)
	n.set("b", "r", "x", 1)
	n.set("c", "r", "y", 1)
	a := n.trs["a"]
	// b's last user leaves and its delta is lost: b stops tracking r.
	if _, _, ended := n.trs["b"].setLocal("r", "x", 0, 0, n.now); !ended {
		t.Fatal("b still tracks r")
	}
	n.events["a"] = nil
	a.beginConfirm("r", 50, n.now+10)
	for _, m := range n.trs["c"].ownState("r", false, 50, 10, 1<<20) { // c answers
		a.applyState(m, n.now)
	}
	wantA := func(want ...string) {
		t.Helper()
		if got, _ := a.users("r", 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("a: %v, want %v", got, want)
		}
	}
	n.advance(5)
	wantA("watcher", "x", "y") // not yet due
	n.advance(10)
	wantA("watcher", "y")
	n.advance(testGrace + 1)
	n.wantEvents("a", "r left x")
}

// startAsking makes id start tracking room with its first member first,
// sends its initial ask q to the others tracking the room, and returns
// their answers, not yet delivered (late answers).
func (n *trackNet) startAsking(id, room, first string, q uint64) map[string][]*PresenceMsg {
	n.t.Helper()
	tr := n.trs[id]
	if _, started, _ := tr.setLocal(room, first, 1, 0, n.now); !started {
		n.t.Fatalf("%s already tracks %s", id, room)
	}
	tr.beginInitial(room, q, n.now+testTimeout)
	answers := map[string][]*PresenceMsg{}
	for _, ask := range tr.ownState(room, true, q, 2, 1<<20) {
		for id2, tr2 := range n.trs {
			if id2 != id && tr2.tracked(room) {
				tr2.applyState(ask, n.now)
				if ask.Last {
					answers[id2] = tr2.ownState(room, false, q, 2, 1<<20)
				}
			}
		}
	}
	n.collect()
	n.events[id] = nil // the first member's own join: nobody else here to tell
	return answers
}

func (n *trackNet) deliver(to string, msgs []*PresenceMsg) {
	for _, m := range msgs {
		n.trs[to].applyState(m, n.now)
	}
	n.collect()
}

// A user joining here while the room's initial ask is unanswered: no
// user:joined when another instance has it (the answers say so), one when
// nobody had it; and the events wait for every instance the answers name.
func TestTrackerInitialAskHoldsEvents(t *testing.T) {
	n := newTrackNet(t, "a", "b", "c")
	n.set("a", "r", "u", 1)
	n.set("c", "r", "x", 1)
	n.set("a", "r", "z", 1)
	n.events = map[string][]string{}
	answers := n.startAsking("b", "r", "m", 100)
	b := n.trs["b"]
	if _, _, _ = b.setLocal("r", "u", 1, 7, n.now); len(b.changes) != 0 {
		t.Fatalf("events before the answers: %+v", b.changes)
	}
	b.setLocal("r", "g", 1, 8, n.now) // nobody had g
	b.setLocal("r", "x", 2, 9, n.now) // x is on c
	b.setLocal("r", "y", 1, 0, n.now) // a user that comes and goes meanwhile
	b.setLocal("r", "y", 0, 0, n.now)
	if got, _ := b.users("r", 0); !reflect.DeepEqual(got, []string{"g", "m", "u", "x"}) {
		t.Fatalf("b's users %v: presence answers are not held back", got)
	}
	n.deliver("b", answers["a"]) // a's answer names c: still waiting
	n.wantEvents("b")
	// z leaves a after a's answer, before c's: a real leave, with the grace.
	d, _, _ := n.trs["a"].setLocal("r", "z", 0, 0, n.now)
	n.trs["b"].applyDelta(d, n.now)
	n.collect()
	n.wantEvents("b")
	n.deliver("b", answers["c"])
	n.wantEvents("b", "r joined g")
	n.advance(testGrace + 1)
	n.wantEvents("b", "r left z")
	if got, _ := b.users("r", 0); !reflect.DeepEqual(got, []string{"g", "m", "u", "x"}) {
		t.Fatalf("b's users %v", got)
	}
}

// The held joined keeps the joining connection out of it.
func TestTrackerInitialAskKeepsExclude(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "u", 1)
	answers := n.startAsking("b", "r", "m", 100)
	b := n.trs["b"]
	b.setLocal("r", "g", 1, 8, n.now)
	for _, m := range answers["a"] {
		b.applyState(m, n.now)
	}
	if c := b.takeChanges(); len(c) != 1 || c[0].user != "g" || !c[0].joined || c[0].exclude != 8 {
		t.Fatalf("changes %+v, want joined g excluding connection 8", c)
	}
}

// Without answers the events wait at most the deadline, then go out with
// what is known; an instance the answers named that is lost meanwhile is
// not waited for; nobody to answer (no responders) ends the wait at once.
func TestTrackerInitialAskEnds(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	n.set("a", "r", "u", 1)
	n.startAsking("b", "r", "m", 100) // a's answer lost
	b := n.trs["b"]
	b.setLocal("r", "u", 1, 7, n.now)
	n.advance(testTimeout - 1)
	n.wantEvents("b")
	n.advance(1)
	n.wantEvents("b", "r joined u") // the best it knows: the answer never came

	n = newTrackNet(t, "a", "b", "c")
	n.set("a", "r", "u", 1)
	n.set("c", "r", "x", 1)
	answers := n.startAsking("b", "r", "m", 100)
	b = n.trs["b"]
	b.setLocal("r", "g", 1, 0, n.now)
	n.deliver("b", answers["a"]) // names c
	n.wantEvents("b")
	b.dropInstance("c", n.now, false) // c lost: its answer is not coming
	n.collect()
	n.wantEvents("b", "r joined g")

	n = newTrackNet(t, "b")
	n.startAsking("b", "r", "m", 100)
	b = n.trs["b"]
	b.setLocal("r", "g", 1, 0, n.now)
	n.collect()
	n.wantEvents("b")
	b.noAnswer(100, n.now)
	n.collect()
	n.wantEvents("b", "r joined g")
}

// Two instances start tracking the room at once: each hears the other's
// ask (its first member's arrival) before the other's answer to its own
// ask, and that answer lists the same member again. It shows the arrival
// already told, not a presence from before: each first member gets
// user:joined for the other.
func TestTrackerInitialAsksCross(t *testing.T) {
	n := newTrackNet(t, "a", "b")
	a, b := n.trs["a"], n.trs["b"]
	begin := func(tr *tracker, user string, q uint64) []*PresenceMsg {
		if _, started, _ := tr.setLocal("r", user, 1, 0, n.now); !started {
			t.Fatalf("%s already tracks r", user)
		}
		tr.beginInitial("r", q, n.now+testTimeout)
		return tr.ownState("r", true, q, 2, 1<<20)
	}
	askA, askB := begin(a, "wa", 1), begin(b, "wb", 2)
	n.collect()
	n.events = map[string][]string{}
	for _, m := range askB { // b's ask reaches a, a's reaches b
		a.applyState(m, n.now)
	}
	for _, m := range askA {
		b.applyState(m, n.now)
	}
	ansA, ansB := a.ownState("r", false, 2, 2, 1<<20), b.ownState("r", false, 1, 2, 1<<20)
	n.collect()
	n.wantEvents("a")
	n.wantEvents("b")
	n.deliver("a", ansB) // b's answer to a's ask, listing wb again
	n.deliver("b", ansA)
	n.wantEvents("a", "r joined wb")
	n.wantEvents("b", "r joined wa")
}
