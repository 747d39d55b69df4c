package engine

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// onLoop runs f on l's goroutine and waits for it.
func onLoop[T any](t *testing.T, l *Loop, f func(*Loop) T) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	out, err := Collect(ctx, []*Loop{l}, f)
	if err != nil {
		t.Fatalf("on loop %d: %v", l.Index(), err)
	}
	return out[0]
}

// twoRunningLoops starts a two-loop engine and dials until both loops
// have a connection (a loop takes Posts once it had one).
func twoRunningLoops(t *testing.T, opts Options) *Engine {
	t.Helper()
	opts.Loops = 2
	e := startManualEngine(t, opts, EchoHandler{})
	for i := 0; i < 16 && !(e.Loops()[0].Running() && e.Loops()[1].Running()); i++ {
		dialUpgraded(t, e)
	}
	checkFor(t, ioTimeout, func() error {
		if !e.Loops()[0].Running() || !e.Loops()[1].Running() {
			return io.ErrNoProgress
		}
		return nil
	})
	return e
}

// seqLog records, on the receiving loop, the order tasks arrived in.
type seqLog struct {
	mu  sync.Mutex
	got []int
}

func (s *seqLog) add(v int) { s.mu.Lock(); s.got = append(s.got, v); s.mu.Unlock() }
func (s *seqLog) snapshot() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.got...)
}

type seqArg struct {
	log *seqLog
	v   int
}

func seqTask(_ *Loop, arg any) { a := arg.(*seqArg); a.log.add(a.v) }

// Hand-offs made by one loop iteration reach the target in order, with one
// hand-over (one inbox lock, at most one wake-up) for all of them.
func TestHandoffBatchedPerIteration(t *testing.T) {
	e := twoRunningLoops(t, Options{})
	from, to := e.Loops()[0], e.Loops()[1]
	log := &seqLog{}
	const n = 100
	before := onLoop(t, from, func(l *Loop) uint64 { return l.handovers })
	ok := onLoop(t, from, func(l *Loop) bool {
		for i := 0; i < n; i++ {
			if !l.HandoffBytes(to, Task{Fn: seqTask, Arg: &seqArg{log, i}}, 10) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatal("HandoffBytes refused with an empty inbox")
	}
	checkFor(t, ioTimeout, func() error {
		if len(log.snapshot()) < n {
			return io.ErrNoProgress
		}
		return nil
	})
	got := log.snapshot()
	for i, v := range got {
		if v != i {
			t.Fatalf("task %d ran as %d-th: order lost: %v", v, i, got)
		}
	}
	if after := onLoop(t, from, func(l *Loop) uint64 { return l.handovers }); after-before != 1 {
		t.Fatalf("%d hand-offs took %d hand-overs, want 1", n, after-before)
	}
	if b := to.inboxBytes.Load(); b != 0 {
		t.Fatalf("inbox budget not returned after the tasks ran: %d bytes still charged", b)
	}
}

// A refused HandoffBytes is counted as an inbox drop, and what the loop had
// already queued for the target goes first: a task posted right after the
// refusal (the router's gap notice) runs after them.
func TestHandoffBytesRefusalKeepsOrder(t *testing.T) {
	e := twoRunningLoops(t, Options{InboxBytes: 64 << 10})
	from, to := e.Loops()[0], e.Loops()[1]
	log := &seqLog{}
	// Hold the target busy so nothing it is handed runs (and returns its
	// budget) before the refusal.
	inside, release := make(chan struct{}), make(chan struct{})
	if !to.Post(Task{Fn: func(*Loop, any) { close(inside); <-release }}) {
		t.Fatal("post to loop 1 refused")
	}
	<-inside
	results := onLoop(t, from, func(l *Loop) []bool {
		var r []bool
		for i := 1; i <= 4; i++ {
			r = append(r, l.HandoffBytes(to, Task{Fn: seqTask, Arg: &seqArg{log, i}}, 20000))
		}
		to.Post(Task{Fn: seqTask, Arg: &seqArg{log, 99}}) // what the caller says about the drop
		return r
	})
	close(release)
	if want := []bool{true, true, true, false}; !slices.Equal(results, want) {
		t.Fatalf("HandoffBytes results %v, want %v (budget 64 KiB, 20000 each)", results, want)
	}
	if n, b := to.InboxDrops(); n != 1 || b != 20000 {
		t.Fatalf("InboxDrops = %d, %d bytes; want 1, 20000", n, b)
	}
	checkFor(t, ioTimeout, func() error {
		if len(log.snapshot()) < 4 {
			return io.ErrNoProgress
		}
		return nil
	})
	if got := log.snapshot(); !slices.Equal(got, []int{1, 2, 3, 99}) {
		t.Fatalf("order on the target %v, want [1 2 3 99]", got)
	}
}

// floodHandler answers "flood" with count messages of size bytes and
// counts OnDrain calls.
type floodHandler struct {
	BaseHandler
	count, size int
	drains      atomic.Int32
}

func (h *floodHandler) OnMessage(c *Conn, op ws.OpCode, payload []byte) {
	msg := make([]byte, h.size)
	for i := 0; i < h.count; i++ {
		c.WriteMessage(ws.OpBinary, msg)
	}
}

func (h *floodHandler) OnDrain(*Conn) { h.drains.Add(1) }

// A receiver that went above the high-water mark gets the rest of its
// frames, and the handler its OnDrain, as it reads, with no tick at all
// (the clock is manual and never advanced): drain detection does not wait
// for the tick. The old engine noticed only on the next tick.
func TestDrainSeenWithoutTick(t *testing.T) {
	h := &floodHandler{count: 128, size: 128 << 10}
	e := startManualEngine(t, Options{Loops: 1, WriteHighWater: 64 << 10, WriteLowWater: 16 << 10, MaxQueueBytes: 64 << 20}, h)
	c := dialRaw(t, e)
	c.write([]byte(upgradeRequest(e.opts.WSPath)))
	if resp := c.readResponse(); resp.StatusCode != 101 {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	c.writeFrame(byte(ws.OpText), []byte("flood"))
	// Let the engine fill the socket and back the connection up before
	// reading: the rest must come out of the cork as the client reads.
	checkFor(t, ioTimeout, func() error {
		backlogged := onLoop(t, e.Loops()[0], func(l *Loop) int { return len(l.backlog) })
		if backlogged == 0 {
			return io.ErrNoProgress
		}
		return nil
	})
	for i := 0; i < h.count; i++ {
		f, err := c.readFrameErr(ioTimeout)
		if err != nil {
			t.Fatalf("frame %d of %d never came without a tick: %v", i+1, h.count, err)
		}
		if len(f.payload) != h.size {
			t.Fatalf("frame %d: %d bytes, want %d", i+1, len(f.payload), h.size)
		}
	}
	checkFor(t, ioTimeout, func() error {
		if h.drains.Load() == 0 {
			return io.ErrNoProgress
		}
		return nil
	})
}

// closeNotifier tells every other connection of the loop "bye" when one
// closes.
type closeNotifier struct{ BaseHandler }

func (closeNotifier) OnClose(c *Conn, _ ws.StatusCode) {
	for _, o := range c.Loop().Conns() {
		if o != c && o.State() != StateConnecting {
			o.WriteMessage(ws.OpText, []byte("bye"))
		}
	}
}

// What a handler writes in OnClose leaves with that loop iteration, with
// no tick and no other traffic to flush it.
func TestOnCloseWritesFlushed(t *testing.T) {
	e := startManualEngine(t, Options{Loops: 1}, closeNotifier{})
	stay, _ := dialUpgraded(t, e)
	leave, _ := dialUpgraded(t, e)
	checkFor(t, ioTimeout, func() error {
		if n := onLoop(t, e.Loops()[0], func(l *Loop) int { return len(l.Conns()) }); n != 2 {
			return io.ErrNoProgress
		}
		return nil
	})
	_ = leave.conn.SetLinger(0)
	_ = leave.conn.Close()
	f, err := stay.readFrameErr(5 * time.Second)
	if err != nil {
		t.Fatalf("the write made in OnClose never left: %v", err)
	}
	if string(f.payload) != "bye" {
		t.Fatalf("got %q, want bye", f.payload)
	}
}

// A request head that arrives in pieces, split inside its closing CRLFCRLF,
// is searched only where it was not searched before and still upgrades.
func TestUpgradeHeadInPieces(t *testing.T) {
	e := startManualEngine(t, Options{Loops: 1}, EchoHandler{})
	c := dialRaw(t, e)
	req := []byte(upgradeRequest(e.opts.WSPath))
	cuts := []int{10, len(req) / 2, len(req) - 3, len(req) - 1}
	prev := 0
	for _, cut := range cuts {
		c.write(req[prev:cut])
		prev = cut
		want := uint32(cut)
		checkFor(t, ioTimeout, func() error {
			got := onLoop(t, e.Loops()[0], func(l *Loop) uint32 {
				for _, cn := range l.Conns() {
					return cn.headScanned()
				}
				return 0
			})
			if got != want {
				return io.ErrNoProgress
			}
			return nil
		})
	}
	c.write(req[prev:])
	if resp := c.readResponse(); resp.StatusCode != 101 {
		t.Fatalf("upgrade after a head in pieces: %d", resp.StatusCode)
	}
	c.writeFrame(byte(ws.OpText), []byte("hi"))
	c.expectMessage(byte(ws.OpText), []byte("hi"))
	if got := onLoop(t, e.Loops()[0], func(l *Loop) uint32 { return l.Conns()[0].pingSent }); got != 0 {
		t.Fatalf("head scan position left in pingSent after the upgrade: %d", got)
	}
}
