package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// A burst that takes a reading receiver's queue over the high-water mark
// within one loop iteration: the kernel takes it all, so the engine never
// flags the connection as backlogged, and nothing may be stranded in the
// router's held list (regression: 140 of 200 messages never arrived).
func TestIntegrationFlowBurstAboveHighWater(t *testing.T) {
	for _, loops := range []int{1, 2} {
		g := startGateway(t, engine.Options{Loops: loops}, Options{RateMsgs: -1})
		s, r := g.user("s"), g.user("r")
		s.join("burst")
		r.join("burst")
		const n = 200
		var frames []byte
		for i := range n {
			frames = append(frames, maskedFrame(0x1, []byte(fmt.Sprintf(`{"type":"message","room":"burst","priority":"low","data":[%d,%s]}`, i, filler(1000))))...)
		}
		s.writeWire(frames) // one write: the gateway decodes all of it in one go
		for i := range n {
			mm, ok := r.next(waitFor)
			if !ok {
				t.Fatalf("loops %d: only %d of %d messages arrived; router stats %+v", loops, i, n, g.routerStats())
			}
			m := r.check(mm)
			checkDelivery(t, m, "room", "burst", "s")
			if got := m["data"].([]any)[0]; got != float64(i) {
				t.Fatalf("loops %d: message %d arrived as %v", loops, i, got)
			}
		}
		r.none(quiet)
		s.alive()
	}
}

// glacial is a refill rate so slow (one message per 1000 s) that no test
// run sees a token come back: what passes and what is limited depends on
// counts only, never on how fast the machine is.
const glacial = 0.001

// -rate-msgs / burst: the 6th message of a burst of 6 gets rate_limited;
// the connection and the others keep working. Deterministic: the bucket
// never refills during the test.
func TestIntegrationFlowRateLimit(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{RateMsgs: glacial, RateBurst: 5, RateKickAfter: 100})
	c, other := g.user("c"), g.user("other")
	c.join("r") // 1 token
	other.join("r")
	c.send(`{"type":"message","room":"r","data":0}`) // 2
	other.expectDelivery("room", "r", "c")
	var frames []byte
	for i := range 4 { // 3..6: the last one is over
		frames = append(frames, maskedFrame(0x1, []byte(fmt.Sprintf(`{"type":"ping","id":"p%d"}`, i)))...)
	}
	c.writeWire(frames)
	for i := range 3 {
		if m := c.expect("pong"); m["id"] != fmt.Sprintf("p%d", i) {
			t.Fatalf("%v", m)
		}
	}
	c.expectErr(wire.CodeRateLimited)
	other.alive() // buckets are per connection
	c.send(`{"type":"ping","id":"again"}`)
	c.expectErr(wire.CodeRateLimited) // still empty: nothing refilled
	if s := g.routerStats(); s.RateLimited != 2 || s.RateKicks != 0 {
		t.Fatalf("RateLimited %d RateKicks %d", s.RateLimited, s.RateKicks)
	}

	// The byte bucket: with a 10000 s burst at 0.2 B/s it holds 2000 bytes.
	g2 := startGateway(t, engine.Options{}, Options{RateMsgs: 0.01, RateBurst: 100, RateBytes: 0.2})
	b := g2.user("b")
	b.send(`{"type":"ping","pad":` + filler(1500) + `}`)
	b.expect("pong")
	b.send(`{"type":"ping","pad":` + filler(1500) + `}`)
	b.expectErr(wire.CodeRateLimited)
	b.alive() // small messages still fit in the ~500 bytes left
}

// A limited connection recovers as its bucket refills: a big burst against
// a small rate is limited whatever the timing (at most burst + rate x the
// time to decode it passes), and pings then get through again once tokens
// come back. Every limited message is answered and counted once.
func TestIntegrationFlowRateRecovers(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{RateMsgs: 20, RateBurst: 1, RateKickAfter: -1})
	c, other := g.user("c"), g.user("other")
	const n = 200
	var frames []byte
	for i := range n {
		frames = append(frames, maskedFrame(0x1, []byte(fmt.Sprintf(`{"type":"ping","id":"p%d"}`, i)))...)
	}
	c.writeWire(frames)
	pongs, limited := 0, 0
	for range n {
		switch m := c.read(); {
		case m["type"] == "pong":
			pongs++
		case m["type"] == "error" && m["code"] == wire.CodeRateLimited:
			limited++
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
	if pongs == 0 || limited == 0 {
		t.Fatalf("%d pongs, %d limited: want both", pongs, limited)
	}
	other.alive()
	deadline := time.Now().Add(waitFor)
	for { // the bucket refills at 20/s: a later ping gets through
		c.send(`{"type":"ping","id":"retry"}`)
		m := c.read()
		if m["type"] == "pong" {
			break
		}
		if m["type"] != "error" || m["code"] != wire.CodeRateLimited || time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", m)
		}
		limited++
		time.Sleep(10 * time.Millisecond) // poll: the next token is 50 ms away
	}
	if s := g.routerStats(); s.RateLimited != uint64(limited) || s.RateKicks != 0 {
		t.Fatalf("RateLimited %d (want %d) RateKicks %d", s.RateLimited, limited, s.RateKicks)
	}
}

// -rate-kick-after 3: the third rate-limited message in a row closes with 1008.
func TestIntegrationFlowRateKick1008(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{RateMsgs: glacial, RateBurst: 5, RateKickAfter: 3})
	c, other := g.user("c"), g.user("other")
	other.join("r")
	var frames []byte
	for i := range 8 {
		frames = append(frames, maskedFrame(0x1, []byte(fmt.Sprintf(`{"type":"ping","id":"p%d"}`, i)))...)
	}
	c.writeWire(frames)
	for range 5 {
		c.expect("pong")
	}
	c.expectErr(wire.CodeRateLimited)
	c.expectErr(wire.CodeRateLimited)
	c.expectClose(1008)
	other.alive()
	if s := g.routerStats(); s.RateKicks != 1 || s.RateLimited != 3 {
		t.Fatalf("RateKicks %d RateLimited %d", s.RateKicks, s.RateLimited)
	}
	if s := g.engineStats(); s.CloseCount(1008) != 1 {
		t.Fatalf("1008 closes %d", s.CloseCount(1008))
	}
}

// flowOptions are the small outbound limits of the flow-control tests.
var flowOptions = engine.Options{
	Loops:            1, // everything on one loop: a pong means every fan-out is done
	MaxQueueBytes:    256 << 10,
	WriteHighWater:   64 << 10,
	WriteLowWater:    16 << 10,
	SocketSendBuffer: 16 << 10,
	TickInterval:     10 * time.Millisecond,
}

// A client that stops reading while its room floods is closed with 4009;
// its queue never passed MaxQueueBytes, and the other members get everything.
func TestIntegrationFlowSlowConsumer4009(t *testing.T) {
	g := startGateway(t, flowOptions, Options{RateMsgs: -1})
	slow := g.userWith(auth.Claims{Sub: "slow"}, dialOpts{rcvbuf: 4096, buf: -1})
	other := g.user("other")
	sender := g.user("sender")
	for _, c := range []*tclient{slow, other, sender} {
		c.join("flood")
	}
	const n = 400 // ~400 KiB, well over MaxQueueBytes
	var msgs []string
	for i := range n {
		msgs = append(msgs, fmt.Sprintf(`{"type":"message","room":"flood","data":[%d,%s]}`, i, filler(1000)))
	}
	for i, m := range pacedFlood(t, sender, other, msgs) {
		checkDelivery(t, m, "room", "flood", "sender")
		if m["data"].([]any)[0] != float64(i) {
			t.Fatalf("other: message %d arrived as %v", i, m["data"].([]any)[0])
		}
	}
	sender.alive()
	st := g.routerStats()
	if st.SlowConsumers != 1 {
		t.Fatalf("SlowConsumers = %d, want 1 (stats %+v)", st.SlowConsumers, st)
	}
	if st.MaxQueued > flowOptions.MaxQueueBytes || st.MaxQueued < flowOptions.WriteHighWater {
		t.Fatalf("MaxQueued = %d: want within (%d, %d]", st.MaxQueued, flowOptions.WriteHighWater, flowOptions.MaxQueueBytes)
	}
	slow.expectClose(4009) // reading again, it finds the close frame behind its queue
	sender.send(`{"type":"message","room":"flood","data":"after"}`)
	other.expectDelivery("room", "flood", "sender")
	if s := g.engineStats(); s.CloseCount(4009) != 1 {
		t.Fatalf("4009 closes %d", s.CloseCount(4009))
	}
}

// A receiver that pauses reading: low-priority messages to it are dropped
// and counted, normal ones are held, a high-priority one overtakes the held
// ones; when it reads again it gets everything held and exactly one
// gap {dropped: N} with N the low messages it missed.
func TestIntegrationFlowBackpressureGapPriority(t *testing.T) {
	g := startGateway(t, flowOptions, Options{RateMsgs: -1})
	paused := g.userWith(auth.Claims{Sub: "paused"}, dialOpts{rcvbuf: 4096, buf: -1})
	other := g.user("other")
	sender := g.user("sender")
	for _, c := range []*tclient{paused, other, sender} {
		c.join("bp")
	}
	const normal, low = 150, 30 // ~150 KiB: over high water, under MaxQueueBytes
	var msgs []string
	for i := range normal {
		msgs = append(msgs, fmt.Sprintf(`{"type":"message","room":"bp","data":["n",%d,%s]}`, i, filler(1000)))
	}
	got := pacedFlood(t, sender, other, msgs)
	sender.alive()
	st := g.routerStats()
	if st.Held == 0 {
		t.Fatalf("the paused receiver never backed up: %+v", st)
	}
	held := st.Held
	msgs = msgs[:0]
	for i := range low {
		msgs = append(msgs, fmt.Sprintf(`{"type":"message","room":"bp","priority":"low","data":["l",%d]}`, i))
	}
	msgs = append(msgs, `{"type":"message","room":"bp","priority":"high","data":["h",0]}`)
	got = append(got, pacedFlood(t, sender, other, msgs)...)
	sender.alive()
	st = g.routerStats()
	if st.DroppedLow != low || st.Held != held || st.SlowConsumers != 0 || st.GapsSent != 0 {
		t.Fatalf("stats %+v: want %d low dropped, held unchanged at %d", st, low, held)
	}
	if st.MaxQueued > flowOptions.MaxQueueBytes {
		t.Fatalf("MaxQueued %d > MaxQueueBytes", st.MaxQueued)
	}
	// The other member got all of it, in order.
	for i, m := range got {
		checkDelivery(t, m, "room", "bp", "sender")
		d := m["data"].([]any)
		switch {
		case i < normal && (d[0] != "n" || d[1] != float64(i)):
			t.Fatalf("other: %d: %v", i, d)
		case i >= normal && i < normal+low && (d[0] != "l" || d[1] != float64(i-normal)):
			t.Fatalf("other: %d: %v", i, d)
		case i == normal+low && d[0] != "h":
			t.Fatalf("other: %d: %v", i, d)
		}
	}

	// Read again.
	nextN, afterHigh, sawHigh := 0, 0, false
	for nextN < normal || !sawHigh {
		m := paused.expect("message")
		d := m["data"].([]any)
		switch d[0] {
		case "n":
			if d[1] != float64(nextN) {
				t.Fatalf("normal %v out of order, want %d", d[1], nextN)
			}
			nextN++
			if sawHigh {
				afterHigh++
			}
		case "h":
			sawHigh = true
		default:
			t.Fatalf("a low-priority message got through while backed up: %v", d)
		}
	}
	if uint64(afterHigh) != held {
		t.Fatalf("%d normal messages arrived after the high one, want the %d held", afterHigh, held)
	}
	gap := paused.expect("gap")
	if gap["dropped"] != float64(low) {
		t.Fatalf("gap %v, want dropped %d", gap, low)
	}
	paused.none(quiet) // exactly one gap
	// Back to normal: low messages flow again, no second gap.
	sender.send(`{"type":"message","room":"bp","priority":"low","data":["after"]}`)
	paused.expectDelivery("room", "bp", "sender")
	other.expectDelivery("room", "bp", "sender")
	paused.alive()
	paused.none(quiet)
	if st := g.routerStats(); st.GapsSent != 1 || st.DroppedLow != low {
		t.Fatalf("stats %+v: want one gap", st)
	}
}

// pacedFlood sends msgs from sender, waiting every few messages until the
// reading member has them, so that only a member that stops reading backs
// up (a -race build reads slowly). It returns what the reader got.
func pacedFlood(t *testing.T, sender, reader *tclient, msgs []string) []map[string]any {
	t.Helper()
	var got []map[string]any
	for i, m := range msgs {
		sender.send(m)
		if (i+1)%8 == 0 || i == len(msgs)-1 {
			for len(got) <= i {
				got = append(got, reader.expect("message"))
			}
		}
	}
	return got
}
