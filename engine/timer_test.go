package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// --- timers through the engine (PROTOCOL.md section 7) -----------------------
//
// These tests drive the engine's clock themselves (manualClock): a deadline
// passes when the test advances the wheels past it, never because the
// machine was slow, and a test can check that nothing happened one tick
// before a deadline. Durations below are nominal; TickInterval converts
// them to ticks.

func timerOpts() Options {
	return Options{
		TickInterval:     100 * time.Millisecond,
		HandshakeTimeout: time.Minute,
		CloseTimeout:     2 * time.Second, // 20 ticks
		PingInterval:     time.Second,     // 10 ticks
		PingTimeout:      4 * time.Second, // 40 ticks
		IdleTimeout:      -1,
	}
}

// startManualEngine is startEngine with a clock only the test advances.
func startManualEngine(t testing.TB, opts Options, h Handler) *Engine {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Loops == 0 {
		opts.Loops = 2
	}
	e, err := New(opts, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.manualClock = new(atomic.Uint32)
	if err := e.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e
}

// advance moves the manual clock n ticks and runs a tick on every loop,
// returning once each has run it.
func advance(t testing.TB, e *Engine, n uint32) {
	t.Helper()
	e.manualClock.Add(n)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if _, err := Collect(ctx, e.loops, func(l *Loop) struct{} { tickTask(l, nil); return struct{}{} }); err != nil {
		t.Fatalf("advance: %v", err)
	}
}

// writeRead writes b and waits until the engine has read it.
func (c *rawClient) writeRead(e *Engine, b []byte) {
	c.t.Helper()
	c.writeSynced(e, b, sumStats(c.t, e).BytesIn+uint64(len(b)))
}

// expectPing reads one frame and checks it is an empty ping.
func (c *rawClient) expectPing() {
	c.t.Helper()
	if fr := c.readFrame(); fr.op != opPing || !fr.fin || len(fr.payload) != 0 {
		c.t.Fatalf("got %v, want an empty ping", fr)
	}
}

// answerPing reads a ping and answers it; the engine has read the pong when
// it returns.
func (c *rawClient) answerPing(e *Engine) {
	c.t.Helper()
	c.expectPing()
	c.writeRead(e, clientFrame(true, 0, opPong, true, nil))
}

// closes4010 is how many 4010 closes the engine sent.
func closes4010(t testing.TB, e *Engine) uint64 {
	s := sumStats(t, e)
	return s.CloseCount(CloseIdle)
}

func TestPingTimers(t *testing.T) {
	e := startManualEngine(t, timerOpts(), EchoHandler{})
	tk := e.ticks

	t.Run("silent client gets a ping", func(t *testing.T) {
		before := sumStats(t, e).PingsSent
		c, _ := dialUpgraded(t, e)
		advance(t, e, tk.ping-1)
		if got := sumStats(t, e).PingsSent; got != before {
			t.Fatalf("PingsSent %d one tick before the ping interval, was %d", got, before)
		}
		advance(t, e, 1)
		c.expectPing()
		if got := sumStats(t, e).PingsSent; got != before+1 {
			t.Fatalf("PingsSent %d, want %d", got, before+1)
		}
	})

	t.Run("answered pings keep the connection open", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		before := closes4010(t, e)
		// Rounds past PingInterval+PingTimeout in all. Deadlines are lazy:
		// after an answered ping, the next one goes out when the wheel
		// visits the connection at its ping timeout slot.
		advance(t, e, tk.ping)
		c.answerPing(e)
		for round := 0; round < 3; round++ {
			advance(t, e, tk.pingTimeout)
			c.answerPing(e)
		}
		if got := closes4010(t, e); got != before {
			t.Fatalf("%d 4010 closes for a client that answers pings", got-before)
		}
		c.writeFrame(opText, []byte("still here"))
		c.expectMessage(opText, []byte("still here"))
	})

	t.Run("unanswered ping closes with 4010", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		before := closes4010(t, e)
		advance(t, e, tk.ping)
		c.expectPing()
		advance(t, e, tk.pingTimeout-1)
		if got := closes4010(t, e); got != before {
			t.Fatalf("4010 one tick before the ping timeout")
		}
		advance(t, e, 1)
		fr := c.expectClose(t, uint16(CloseIdle))
		if fr.closeReason() != "ping timeout" {
			t.Errorf("reason %q", fr.closeReason())
		}
	})

	t.Run("a data frame also answers a ping", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		before := closes4010(t, e)
		advance(t, e, tk.ping)
		c.expectPing()
		c.writeFrame(opText, []byte("data, no pong"))
		c.expectMessage(opText, []byte("data, no pong")) // read by the engine
		advance(t, e, tk.pingTimeout)
		c.expectPing() // the next round's ping, not a close
		if got := closes4010(t, e); got != before {
			t.Fatal("4010 although a data frame answered the ping")
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	opts := timerOpts()
	opts.IdleTimeout = 4 * time.Second // 40 ticks, 4 ping intervals
	opts.PingTimeout = time.Minute
	e := startManualEngine(t, opts, EchoHandler{})
	tk := e.ticks

	t.Run("pings answered but no data", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		before := closes4010(t, e)
		advance(t, e, tk.ping)
		c.answerPing(e)
		advance(t, e, tk.idle-tk.ping-1)
		if got := closes4010(t, e); got != before {
			t.Fatal("4010 before the idle timeout")
		}
		advance(t, e, 1)
		fr := c.expectClose(t, uint16(CloseIdle))
		if fr.closeReason() != "idle timeout" {
			t.Fatalf("got %v %q, want close 4010 idle timeout", fr, fr.closeReason())
		}
	})

	t.Run("a client sending data stays open", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		before := closes4010(t, e)
		for elapsed := uint32(0); elapsed < 3*tk.idle; elapsed += tk.ping - 1 {
			c.writeFrame(opText, []byte("keepalive"))
			c.expectMessage(opText, []byte("keepalive"))
			advance(t, e, tk.ping-1)
		}
		if got := closes4010(t, e); got != before {
			t.Fatal("4010 for a client sending data")
		}
		c.writeFrame(opText, []byte("still here"))
		c.expectMessage(opText, []byte("still here"))
	})
}

// closingHandler echoes, and starts the closing handshake with code 4000
// when it receives "close-me".
type closingHandler struct{ EchoHandler }

func (closingHandler) OnMessage(c *Conn, op ws.OpCode, payload []byte) {
	if string(payload) == "close-me" {
		c.Close(4000, "server bye")
		c.WriteMessage(ws.OpText, []byte("after close")) // dropped
		return
	}
	c.WriteMessage(op, payload)
}

func TestServerCloseHandshake(t *testing.T) {
	e := startManualEngine(t, timerOpts(), closingHandler{})
	tk := e.ticks

	t.Run("client answers", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		c.writeFrame(opText, []byte("close-me"))
		fr := c.readFrame()
		if fr.op != opClose || fr.closeCode() != 4000 || fr.closeReason() != "server bye" {
			t.Fatalf("got %v, want close 4000", fr)
		}
		// Data after the server's close is discarded, not echoed.
		c.writeFrame(opText, []byte("ignored"))
		c.writeFrame(opClose, closePayload(4000, ""))
		// The clock does not move: the TCP close comes from the answer,
		// not from the close timeout.
		c.expectEOF(t, ioTimeout)
	})

	t.Run("client never answers", func(t *testing.T) {
		checkFor(t, ioTimeout, func() error {
			if n := e.OpenConns(); n != 0 {
				return fmt.Errorf("%d connections still open", n)
			}
			return nil
		})
		c, _ := dialUpgraded(t, e)
		c.writeFrame(opText, []byte("close-me"))
		fr := c.readFrame()
		if fr.op != opClose || fr.closeCode() != 4000 {
			t.Fatalf("got %v, want close 4000", fr)
		}
		advance(t, e, tk.close-1)
		if n := e.OpenConns(); n != 1 {
			t.Fatalf("%d open connections one tick before the close timeout, want 1", n)
		}
		advance(t, e, 1)
		c.expectEOF(t, ioTimeout)
	})
}

// --- the timing wheel itself ----------------------------------------------------

// newWheelConns returns n zero connections ready for a wheel.
func newWheelConns(n int) []Conn {
	cs := make([]Conn, n)
	for i := range cs {
		cs[i].wheelSlot = -1
	}
	return cs
}

// wheelLog records expiries as "name@tick".
type wheelLog struct {
	w     *timingWheel
	names map[*Conn]string
	got   []string
}

func (l *wheelLog) expire(c *Conn) {
	if c.wheelSlot != -1 {
		panic("expired connection still armed")
	}
	l.got = append(l.got, fmt.Sprintf("%s@%d", l.names[c], l.w.now))
}

func TestTimingWheel(t *testing.T) {
	const start = 1000

	t.Run("arm, disarm and advance order", func(t *testing.T) {
		w := &timingWheel{now: start}
		cs := newWheelConns(5)
		l := &wheelLog{w: w, names: map[*Conn]string{&cs[0]: "a", &cs[1]: "b", &cs[2]: "c", &cs[3]: "d", &cs[4]: "e"}}
		w.arm(&cs[0], start+5)
		w.arm(&cs[1], start+3)
		w.arm(&cs[2], start+5)
		w.arm(&cs[3], start+4)
		w.arm(&cs[4], start+7)
		w.disarm(&cs[3])
		w.disarm(&cs[3])       // twice: a no-op
		w.arm(&cs[4], start+2) // re-arm moves it
		w.advance(start+4, l.expire)
		if want := []string{"e@1002", "b@1003"}; !slices.Equal(l.got, want) {
			t.Fatalf("expired %v, want %v", l.got, want)
		}
		w.advance(start+4, l.expire) // not forward: nothing
		w.advance(start+3, l.expire)
		w.advance(start+100, l.expire)
		got := l.got[2:]
		slices.Sort(got)
		if want := []string{"a@1005", "c@1005"}; !slices.Equal(got, want) {
			t.Fatalf("expired %v, want %v", got, want)
		}
		if w.now != start+100 {
			t.Fatalf("now %d", w.now)
		}
		for i := range cs {
			if cs[i].wheelSlot != -1 {
				t.Fatalf("conn %d still armed", i)
			}
		}
	})

	t.Run("past and far deadlines are clamped", func(t *testing.T) {
		w := &timingWheel{now: start}
		cs := newWheelConns(4)
		l := &wheelLog{w: w, names: map[*Conn]string{&cs[0]: "past", &cs[1]: "now", &cs[2]: "far", &cs[3]: "edge"}}
		w.arm(&cs[0], start-10)
		w.arm(&cs[1], start)
		w.arm(&cs[2], start+100_000)
		w.arm(&cs[3], start+wheelSlots-1)
		w.advance(start+wheelSlots+10, l.expire)
		got := slices.Clone(l.got)
		slices.Sort(got)
		last := fmt.Sprint(start + wheelSlots - 1)
		want := []string{"edge@" + last, "far@" + last, "now@1001", "past@1001"}
		if !slices.Equal(got, want) {
			t.Fatalf("expired %v, want %v", got, want)
		}
	})

	t.Run("tick counter wraps", func(t *testing.T) {
		near := ^uint32(0) - 4 // a variable: near+10 wraps at run time
		w := &timingWheel{now: near}
		cs := newWheelConns(2)
		l := &wheelLog{w: w, names: map[*Conn]string{&cs[0]: "before", &cs[1]: "after"}}
		w.arm(&cs[0], near+2)
		w.arm(&cs[1], near+10) // wraps to 5
		w.advance(near+20, l.expire)
		if want := []string{fmt.Sprintf("before@%d", near+2), "after@5"}; !slices.Equal(l.got, want) {
			t.Fatalf("expired %v, want %v", l.got, want)
		}
	})

	t.Run("re-arm inside expire", func(t *testing.T) {
		w := &timingWheel{now: start}
		cs := newWheelConns(1)
		var ticks []uint32
		w.arm(&cs[0], start+2)
		w.advance(start+50, func(c *Conn) {
			ticks = append(ticks, w.now)
			if len(ticks) < 4 {
				w.arm(c, w.now+3)
			}
		})
		if want := []uint32{start + 2, start + 5, start + 8, start + 11}; !slices.Equal(ticks, want) {
			t.Fatalf("expired at %v, want %v", ticks, want)
		}
	})

	t.Run("re-arm at the current tick inside expire", func(t *testing.T) {
		w := &timingWheel{now: start}
		cs := newWheelConns(1)
		var ticks []uint32
		w.arm(&cs[0], start+1)
		w.advance(start+5, func(c *Conn) {
			ticks = append(ticks, w.now)
			w.arm(c, w.now) // due now: must go to the next tick, not loop
		})
		if want := []uint32{start + 1, start + 2, start + 3, start + 4, start + 5}; !slices.Equal(ticks, want) {
			t.Fatalf("expired at %v, want %v", ticks, want)
		}
	})

	t.Run("expire disarms others in the same slot", func(t *testing.T) {
		w := &timingWheel{now: start}
		cs := newWheelConns(6)
		index := map[*Conn]int{}
		for i := range cs {
			w.arm(&cs[i], start+3)
			index[&cs[i]] = i
		}
		expired := map[*Conn]int{}
		first := -1
		w.advance(start+10, func(c *Conn) {
			expired[c]++
			if first < 0 {
				// The first one expiring cancels every connection of the
				// other parity (its neighbours in the slot's list among
				// them), as a handler closing other connections would.
				first = index[c]
				for i := range cs {
					if i%2 != first%2 {
						w.disarm(&cs[i])
					}
				}
			}
		})
		for i := range cs {
			want := 1
			if i%2 != first%2 {
				want = 0
			}
			if expired[&cs[i]] != want {
				t.Errorf("conn %d expired %d times, want %d (first was %d)", i, expired[&cs[i]], want, first)
			}
		}
	})

	t.Run("10k connections at random ticks expire once, on time", func(t *testing.T) {
		const n = 10_000
		w := &timingWheel{now: start}
		cs := newWheelConns(n)
		rng := rand.New(rand.NewPCG(1, 2))
		due := make([]uint32, n)
		for i := range cs {
			due[i] = start + 1 + uint32(rng.IntN(2*wheelSlots))
			w.arm(&cs[i], due[i])
			if d := due[i] - start; d >= wheelSlots {
				due[i] = start + wheelSlots - 1 // clamped
			}
		}
		// Disarm and re-arm a tenth at another tick, as activity would.
		for i := 0; i < n; i += 10 {
			w.disarm(&cs[i])
			if i%20 == 0 {
				due[i] = start + 1 + uint32(rng.IntN(wheelSlots-1))
				w.arm(&cs[i], due[i])
			} else {
				due[i] = 0 // never
			}
		}
		index := make(map[*Conn]int, n)
		for i := range cs {
			index[&cs[i]] = i
		}
		at := make([]uint32, n)
		count := make([]int, n)
		expire := func(c *Conn) {
			i := index[c]
			count[i]++
			at[i] = w.now
		}
		// Advance in uneven steps, as late ticks do.
		for w.now-start < 2*wheelSlots {
			w.advance(w.now+1+uint32(rng.IntN(40)), expire)
		}
		for i := range cs {
			switch {
			case due[i] == 0 && count[i] != 0:
				t.Fatalf("disarmed conn %d expired", i)
			case due[i] != 0 && count[i] != 1:
				t.Fatalf("conn %d expired %d times, want once", i, count[i])
			case due[i] != 0 && at[i] != due[i]:
				t.Fatalf("conn %d expired at %d, want %d", i, at[i], due[i])
			}
		}
		for s := range w.slots {
			if w.slots[s] != nil {
				t.Fatalf("slot %d not empty", s)
			}
		}
	})
}
