package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// Tests for issue 9: bursts, slow consumers, idle listeners and stats under
// load. They wait for events (messages, closes, counters) with generous
// deadlines and assert no timings.

// connRecorder hands every opened connection to the test and reports closes.
// Like the router, its deliver task closes a receiver with 4009 when its
// queue would pass MaxQueueBytes.
type connRecorder struct {
	BaseHandler
	opened chan *Conn
	closed chan ws.StatusCode
}

func newConnRecorder() *connRecorder {
	return &connRecorder{opened: make(chan *Conn, 16), closed: make(chan ws.StatusCode, 16)}
}

func (h *connRecorder) OnOpen(c *Conn)                      { h.opened <- c }
func (h *connRecorder) OnClose(_ *Conn, code ws.StatusCode) { h.closed <- code }

func (h *connRecorder) next(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-h.opened:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("no connection opened")
		return nil
	}
}

// delivery is one message for one connection, written on its loop with the
// router's slow-consumer rule (router/deliver.go).
type delivery struct {
	c       *Conn
	payload []byte
	checked bool // apply the router's Queued check; else write blindly (echo-like)
}

func deliverTask(_ *Loop, arg any) {
	d := arg.(*delivery)
	c := d.c
	if c.State() >= StateClosing {
		return
	}
	if d.checked && c.Queued()+len(d.payload)+4 > c.Loop().Engine().Options().MaxQueueBytes {
		c.CloseSlowConsumer()
		return
	}
	c.WriteMessage(ws.OpBinary, d.payload)
}

// postBurst posts n deliveries of payload to c's loop in one go.
func postBurst(t *testing.T, c *Conn, payload []byte, n int, checked bool) {
	t.Helper()
	for i := 0; i < n; i++ {
		d := &delivery{c: c, payload: payload, checked: checked}
		if !c.Loop().PostBytes(Task{Fn: deliverTask, Arg: d}, len(payload)) {
			t.Fatalf("PostBytes refused delivery %d", i)
		}
	}
}

// A burst of 2000 x 1 KiB (twice -max-queue-bytes) to a receiver that reads
// normally must all arrive: it is not a slow consumer. Before the fix the
// loop corked the whole inbox before writing, and the router's check saw
// 2 MiB queued.
func TestBurstReachesReadingReceiver(t *testing.T) {
	h := newConnRecorder()
	e := startEngine(t, Options{Loops: 1, PingInterval: -1, IdleTimeout: -1}, h)
	cl, _, err := websocket.DefaultDialer.Dial(wsURL(e), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer cl.Close()
	c := h.next(t)

	const n, size = 2000, 1 << 10
	payload := bytes.Repeat([]byte("b"), size)
	got := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			_ = cl.SetReadDeadline(time.Now().Add(ioTimeout))
			_, p, err := cl.ReadMessage()
			if err != nil {
				got <- fmt.Errorf("message %d of %d: %w", i, n, err)
				return
			}
			if len(p) != size {
				got <- fmt.Errorf("message %d: %d bytes", i, len(p))
				return
			}
		}
		got <- nil
	}()
	for round := 0; round < 3; round++ {
		postBurst(t, c, payload, n/3+1, true)
	}
	if err := <-got; err != nil {
		s := sumStats(t, e)
		t.Fatalf("reading receiver: %v (close codes sent: 4009 x %d)", err, s.CloseCount(CloseSlowConsumer))
	}
	if s := sumStats(t, e); s.CloseCount(CloseSlowConsumer) != 0 {
		t.Fatalf("%d slow-consumer closes for a receiver that reads", s.CloseCount(CloseSlowConsumer))
	}
}

// burstUntilClosed posts 64 KiB bursts to a receiver that does not read
// until the engine closed it, at most 64 MiB.
func burstUntilClosed(t *testing.T, e *Engine, c *Conn, checked bool) {
	t.Helper()
	payload := bytes.Repeat([]byte("s"), 1<<10)
	for i := 0; i < 1024; i++ {
		postBurst(t, c, payload, 64, checked)
		if s := sumStats(t, e); s.CloseCount(CloseSlowConsumer) > 0 {
			return
		}
	}
	t.Fatal("64 MiB queued for a client that does not read, and no 4009")
}

// With pings and idle timeouts off, a slow consumer closed with 4009 by the
// engine itself must really be closed. Before the fix its close frame was
// queued during its own flush, the loop lost it from the dirty list, and
// nothing ever closed the connection.
func TestSlowConsumerClosedWithoutPings(t *testing.T) {
	h := newConnRecorder()
	e := startEngine(t, Options{Loops: 1, PingInterval: -1, IdleTimeout: -1, CloseTimeout: 200 * time.Millisecond}, h)
	raw, _ := dialUpgraded(t, e) // never reads from here on
	_ = raw
	c := h.next(t)
	burstUntilClosed(t, e, c, false)
	select {
	case code := <-h.closed:
		if code != CloseSlowConsumer {
			t.Fatalf("closed with %d, want 4009", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("4009 sent, but the connection was never closed")
	}
}

// A client that stops reading and reads again after the 4009 must find the
// close frame (code 4009) before the end of the stream, not a bare TCP close
// (1006). Tried with the engine's own limit and with the router's check.
func TestSlowConsumerSeesCloseFrame(t *testing.T) {
	for _, checked := range []bool{false, true} {
		t.Run(fmt.Sprintf("handler-check=%v", checked), func(t *testing.T) {
			h := newConnRecorder()
			e := startEngine(t, Options{Loops: 1, PingInterval: -1, IdleTimeout: -1, CloseTimeout: time.Minute}, h)
			raw, _ := dialUpgraded(t, e)
			c := h.next(t)
			burstUntilClosed(t, e, c, checked)

			// Now read everything: data frames, then the close frame, then EOF.
			var frames int
			for {
				f, err := raw.readFrameErr(ioTimeout)
				if err != nil {
					if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("stream ended after %d frames without a close frame (the client sees 1006)", frames)
					}
					t.Fatalf("after %d frames: %v", frames, err)
				}
				if f.op == opClose {
					if f.closeCode() != uint16(CloseSlowConsumer) {
						t.Fatalf("close code %d, want 4009", f.closeCode())
					}
					break
				}
				frames++
			}
			raw.expectEOF(t, ioTimeout)
			t.Logf("%d data frames before the 4009 close frame", frames)
		})
	}
}

// Idle means no data message in either direction (PROTOCOL.md section 7): a
// client that only receives, and answers pings, must not get 4010 while
// messages reach it. The test drives the engine's clock.
func TestIdleCountsOutboundData(t *testing.T) {
	h := newConnRecorder()
	opts := timerOpts()
	opts.Loops = 1
	opts.IdleTimeout = 4 * time.Second // 40 ticks
	opts.PingTimeout = time.Minute
	e := startManualEngine(t, opts, h)
	cl, _, err := websocket.DefaultDialer.Dial(wsURL(e), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer cl.Close()
	c := h.next(t)

	// A message every quarter of the idle timeout, for four idle timeouts.
	// gorilla answers the engine's pings while it reads.
	payload := []byte("news")
	step := e.ticks.idle / 4
	for elapsed := uint32(0); elapsed < 4*e.ticks.idle; elapsed += step {
		c.Loop().PostBytes(Task{Fn: deliverTask, Arg: &delivery{c: c, payload: payload}}, len(payload))
		_ = cl.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, _, err := cl.ReadMessage(); err != nil {
			t.Fatalf("after %d ticks (idle timeout %d ticks): %v", elapsed, e.ticks.idle, err)
		}
		advance(t, e, step)
	}
	if got := closes4010(t, e); got != 0 {
		t.Fatalf("%d 4010 closes for a client that receives messages", got)
	}
	select {
	case code := <-h.closed:
		t.Fatalf("closed with %d", code)
	default:
	}
}

// blockLoops posts a task to every loop that blocks it until release is
// closed, and waits until each is blocked.
func blockLoops(t *testing.T, e *Engine, release chan struct{}) {
	t.Helper()
	var blocked atomic.Int32
	n := 0
	for _, l := range e.Loops() {
		if !l.Running() {
			continue
		}
		n++
		l.Post(Task{Fn: func(*Loop, any) { blocked.Add(1); <-release }})
	}
	checkFor(t, ioTimeout, func() error {
		if got := blocked.Load(); int(got) < n {
			return fmt.Errorf("%d of %d loops blocked", got, n)
		}
		return nil
	})
}

// Engine.Stats (what /metrics reads) must answer while a loop is stuck in a
// long task, with the counters of the loop's last tick.
func TestStatsDoNotWaitForBusyLoop(t *testing.T) {
	e := startEngine(t, Options{Loops: 1, TickInterval: 10 * time.Millisecond}, EchoHandler{})
	cl, _, err := websocket.DefaultDialer.Dial(wsURL(e), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer cl.Close()
	l := e.Loops()[0]
	// Wait until a tick published the upgrade.
	checkFor(t, ioTimeout, func() error {
		got := make(chan uint64, 1)
		l.Post(Task{Fn: func(l *Loop, _ any) { got <- l.published().Upgrades }})
		if n := <-got; n != 1 {
			return fmt.Errorf("published upgrades %d", n)
		}
		return nil
	})

	release := make(chan struct{})
	blockLoops(t, e, release)
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stats, err := e.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats with a busy loop: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Stats returned only when its context ended")
	}
	if stats[0].Upgrades != 1 || stats[0].States[StateActive]+stats[0].States[StateIdle] != 1 {
		t.Fatalf("stats of the busy loop: %+v", stats[0])
	}
}
