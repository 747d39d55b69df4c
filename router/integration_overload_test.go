package router

import (
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// userOnLoop connects users named sub until one lands on loop want (the
// engine spreads connections over its loops) and returns it.
func (g *gateway) userOnLoop(sub string, want int) *tclient {
	g.t.Helper()
	for range 16 {
		c := g.connect(dialOpts{query: token(g.t, auth.Claims{Sub: sub})})
		ok := c.expect("auth:ok")
		if connLoop(g.t, ok) == want {
			c.user = sub
			return c
		}
		c.close()
	}
	g.t.Fatalf("no connection of %s landed on loop %d", sub, want)
	return nil
}

// blockLoop runs a task on loop i that waits until the returned release
// function is called: the loop is busy, its inbox fills. It returns once
// the loop is inside the task.
func (g *gateway) blockLoop(i int) (release func()) {
	g.t.Helper()
	inside, done := make(chan struct{}), make(chan struct{})
	if !g.eng.Loops()[i].Post(engine.Task{Fn: func(*engine.Loop, any) { close(inside); <-done }}) {
		g.t.Fatalf("loop %d is not running", i)
	}
	<-inside
	var released bool
	release = func() {
		if !released {
			released = true
			close(done)
		}
	}
	g.t.Cleanup(release)
	return release
}

// A burst from one loop into another whose inbox byte budget
// (-loop-inbox-bytes) is spent: the handoffs past the budget are refused
// and counted, the receiver gets every accepted message in order and then
// one gap with exactly the number it missed (issue 9, defect 7).
func TestIntegrationOverloadInboxGapAcrossLoops(t *testing.T) {
	const budget = 64 << 10
	g := startGateway(t, engine.Options{Loops: 2, InboxBytes: budget}, Options{RateMsgs: -1})
	recv := g.userOnLoop("recv", 1)
	send := g.userOnLoop("send", 0)
	recv.join("burst")
	send.join("burst")

	release := g.blockLoop(1)
	const n = 200 // ~200 x 1.3 KB against a 64 KiB budget
	var frames []byte
	for i := range n {
		frames = append(frames, maskedFrame(0x1, []byte(fmt.Sprintf(`{"type":"message","room":"burst","data":[%d,%s]}`, i, filler(1000))))...)
	}
	frames = append(frames, maskedFrame(0x1, []byte(`{"type":"ping","id":"after"}`))...)
	send.writeWire(frames)
	if m := send.expect("pong"); m["id"] != "after" { // loop 0 routed the whole burst
		t.Fatalf("pong %v", m)
	}
	refused, _ := g.eng.Loops()[1].InboxDrops()
	dropped := g.router.shards[1].gaps.dropped.Load()
	if refused == 0 || refused >= n || dropped != refused {
		t.Fatalf("inbox refused %d handoffs, router counted %d: want the same, in (0, %d)", refused, dropped, n)
	}
	release()

	accepted := n - int(dropped)
	for i := range accepted {
		m := recv.expectDelivery("room", "burst", "send")
		if got := m["data"].([]any)[0]; got != float64(i) {
			t.Fatalf("message %d arrived as %v", i, got)
		}
	}
	gap := recv.expect("gap")
	if gap["dropped"] != float64(dropped) || gap["room"] != "burst" || gap["reason"] != wire.GapOverload {
		t.Fatalf("gap %v: want dropped %d, room burst, reason %s", gap, dropped, wire.GapOverload)
	}
	recv.alive() // nothing else came in between
	send.send(`{"type":"message","room":"burst","data":"after"}`)
	if m := recv.expectDelivery("room", "burst", "send"); m["data"] != "after" {
		t.Fatalf("after the gap: %v", m)
	}
	st := g.routerStats()
	if st.InboxDropped != dropped || st.OverloadGaps != 1 || st.GapsSent != 1 {
		t.Fatalf("stats %+v: want InboxDropped %d and one overload gap", st, dropped)
	}
}
