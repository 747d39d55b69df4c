package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// --- timers through the engine (PROTOCOL.md section 7) -----------------------

func timerOpts() Options {
	return Options{
		HandshakeTimeout: 300 * time.Millisecond,
		CloseTimeout:     300 * time.Millisecond,
		TickInterval:     10 * time.Millisecond,
		PingInterval:     100 * time.Millisecond,
		PingTimeout:      400 * time.Millisecond,
		IdleTimeout:      -1,
	}
}

// converse runs the client side for d: every ping is answered with a pong
// when answer is set, every send interval (0: never) a text message goes
// out and its echo is checked. It returns the close frame if the server
// closed, and how many pings came.
func (c *rawClient) converse(t testing.TB, d time.Duration, answer bool, send time.Duration) (closeFrame *serverFrame, pings int) {
	t.Helper()
	end := time.Now().Add(d)
	nextSend := time.Now()
	pending := 0
	for time.Now().Before(end) {
		if send > 0 && !time.Now().Before(nextSend) {
			c.writeFrame(opText, []byte("keepalive"))
			pending++
			nextSend = nextSend.Add(send)
		}
		wait := time.Until(end)
		if send > 0 {
			wait = min(wait, time.Until(nextSend))
		}
		fr, err := c.readFrameErr(max(wait, time.Millisecond))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		switch fr.op {
		case opPing:
			pings++
			if answer {
				c.writeFrame(opPong, fr.payload)
			}
		case opText:
			if string(fr.payload) != "keepalive" || pending == 0 {
				t.Fatalf("unexpected %v %q", fr, fr.payload)
			}
			pending--
		case opClose:
			return &fr, pings
		default:
			t.Fatalf("unexpected %v", fr)
		}
	}
	return nil, pings
}

func TestPingTimers(t *testing.T) {
	e := startEngine(t, timerOpts(), EchoHandler{})

	t.Run("silent client gets a ping", func(t *testing.T) {
		before := sumStats(t, e).PingsSent
		c, _ := dialUpgraded(t, e)
		start := time.Now()
		fr := c.readFrame()
		if fr.op != opPing || !fr.fin || len(fr.payload) != 0 {
			t.Fatalf("got %v, want an empty ping", fr)
		}
		if el := time.Since(start); el < 50*time.Millisecond {
			t.Fatalf("ping after %v, ping interval 100ms", el)
		}
		if got := sumStats(t, e).PingsSent; got <= before {
			t.Fatalf("PingsSent %d, was %d", got, before)
		}
	})

	t.Run("answered pings keep the connection open", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		// Several ping rounds, past PingInterval+PingTimeout.
		cl, pings := c.converse(t, 700*time.Millisecond, true, 0)
		if cl != nil {
			t.Fatalf("closed with %v after %d pings", cl, pings)
		}
		if pings < 2 {
			t.Fatalf("%d pings in 700ms with a 100ms interval", pings)
		}
		c.writeFrame(opText, []byte("still here"))
		c.expectMessage(opText, []byte("still here"))
	})

	t.Run("unanswered ping closes with 4010", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		if fr := c.readFrame(); fr.op != opPing {
			t.Fatalf("got %v, want a ping", fr)
		}
		pinged := time.Now()
		fr := c.expectClose(t, uint16(CloseIdle))
		if el := time.Since(pinged); el < 200*time.Millisecond {
			t.Fatalf("closed %v after the ping, ping timeout 400ms", el)
		}
		if fr.closeReason() != "ping timeout" {
			t.Errorf("reason %q", fr.closeReason())
		}
	})

	t.Run("a data frame also answers a ping", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		cl, _ := c.converse(t, 500*time.Millisecond, false, 50*time.Millisecond)
		if cl != nil {
			t.Fatalf("closed with %v", cl)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	opts := timerOpts()
	opts.PingInterval = 50 * time.Millisecond
	opts.IdleTimeout = 400 * time.Millisecond
	e := startEngine(t, opts, EchoHandler{})

	t.Run("pings answered but no data", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		start := time.Now()
		cl, pings := c.converse(t, 3*time.Second, true, 0)
		if cl == nil {
			t.Fatal("no idle close within 3s, idle timeout 400ms")
		}
		if cl.closeCode() != uint16(CloseIdle) || cl.closeReason() != "idle timeout" {
			t.Fatalf("got %v, want close 4010 idle timeout", cl)
		}
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("idle close after %v, idle timeout 400ms", el)
		}
		if pings == 0 {
			t.Fatal("no ping before the idle close")
		}
		c.expectEOF(t, time.Second)
	})

	t.Run("a client sending data stays open", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		cl, _ := c.converse(t, 900*time.Millisecond, true, 50*time.Millisecond)
		if cl != nil {
			t.Fatalf("closed with %v while sending data", cl)
		}
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
	opts := timerOpts()
	opts.CloseTimeout = time.Second
	e := startEngine(t, opts, closingHandler{})

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
		start := time.Now()
		c.expectEOF(t, time.Second)
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Errorf("TCP close %v after the client's close frame, close timeout 1s", el)
		}
	})

	t.Run("client never answers", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		c.writeFrame(opText, []byte("close-me"))
		fr := c.readFrame()
		if fr.op != opClose || fr.closeCode() != 4000 {
			t.Fatalf("got %v, want close 4000", fr)
		}
		start := time.Now()
		c.expectEOF(t, 3*time.Second)
		if el := time.Since(start); el < 700*time.Millisecond {
			t.Errorf("TCP closed %v after the close frame, close timeout 1s", el)
		}
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
