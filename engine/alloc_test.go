package engine

// Allocation tests of the hot paths: echo, and one pre-encoded frame written
// to many connections.
//
// Method. The loops are gnet's goroutines, so testing.AllocsPerRun around a
// client call cannot isolate the server. Instead the whole process's
// runtime.MemStats.Mallocs is read around many round trips, and the client
// is written so that it allocates nothing per message: a pre-built masked
// frame, a pre-allocated read buffer, plain (*net.TCPConn).Write/Read (no
// deadlines; the runtime's netpoller parks and wakes the goroutine without
// allocating). What remains in the delta is then the server's per-message
// cost plus background noise that does not scale with the number of
// messages (the engine's ticker Posts, a few allocs per tick per loop, made
// rare by a 1s tick). A negative control runs the same measurement against
// a handler that allocates exactly once per message and must see it, so the
// test is known to be able to fail.
//
// Helpers in this file are prefixed "perf" so they cannot collide with the
// other engine test files.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/frame"
)

// perfRaceEnabled reports a -race build: sync.Pool then drops a quarter of
// its Puts on purpose, so allocation counts are meaningless.
var perfRaceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}()

// perfOptions are engine options with nothing periodic going on: no pings,
// no idle timeout, a slow tick (each tick Posts to every loop, and gnet's
// Execute allocates its closure and queue node).
func perfOptions() Options {
	return Options{PingInterval: -1, IdleTimeout: -1, TickInterval: time.Second}
}

// perfUpgradeRequest is the minimal upgrade request of a raw client.
const perfUpgradeRequest = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// perfConn is an allocation-free raw WebSocket client connection.
type perfConn struct {
	c   *net.TCPConn
	buf []byte
}

// perfDial opens a TCP connection to addr (from local, when non-nil),
// upgrades it and returns once the 101 response was read. Bytes after the
// response head are not expected (nothing is sent before the first
// message).
func perfDial(addr string, local *net.TCPAddr) (*perfConn, error) {
	tc, err := perfDialRaw(addr, local)
	if err != nil {
		return nil, err
	}
	return &perfConn{c: tc, buf: make([]byte, 64<<10)}, nil
}

// perfDialRaw is perfDial without the read buffer: for holding many idle
// connections cheaply.
func perfDialRaw(addr string, local *net.TCPAddr) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := nc.(*net.TCPConn)
	if err := perfUpgrade(tc); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// perfUpgrade writes the upgrade request on c and reads the 101 response.
func perfUpgrade(c net.Conn) error {
	if _, err := io.WriteString(c, perfUpgradeRequest); err != nil {
		return err
	}
	var head [512]byte
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !bytes.Contains(head[:n], []byte("\r\n\r\n")) {
		if n == len(head) {
			return fmt.Errorf("response head too long: %q", head[:n])
		}
		m, err := c.Read(head[n:])
		n += m
		if err != nil {
			return fmt.Errorf("reading 101: %w (got %q)", err, head[:n])
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	if !bytes.HasPrefix(head[:n], []byte("HTTP/1.1 101 ")) {
		return fmt.Errorf("upgrade refused: %q", head[:n])
	}
	if i := bytes.Index(head[:n], []byte("\r\n\r\n")); i+4 != n {
		return fmt.Errorf("%d unexpected bytes after the 101 head", n-i-4)
	}
	return nil
}

// perfDialN opens n upgraded raw connections, spread over source addresses
// 127.0.0.2... (5000 per address) when n is large.
func perfDialN(tb testing.TB, addr string, n int) []*perfConn {
	tb.Helper()
	conns := make([]*perfConn, n)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		next     atomic.Int64
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				var local *net.TCPAddr
				if n > 5000 {
					local = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/5000))}
				}
				pc, err := perfDial(addr, local)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("conn %d: %w", i, err) })
					return
				}
				conns[i] = pc
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		perfCloseAll(conns)
		tb.Fatalf("dial: %v", firstErr)
	}
	return conns
}

func perfCloseAll(conns []*perfConn) {
	for _, pc := range conns {
		if pc != nil {
			pc.c.Close()
		}
	}
}

// perfMaskedFrame is a client frame (FIN, masked) carrying payload.
func perfMaskedFrame(op ws.OpCode, payload []byte) []byte {
	b := []byte{0x80 | byte(op)}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], mask, 0)
	return b
}

// perfServerFrameLen is the size of the server's (unmasked) frame for a
// payload of n bytes.
func perfServerFrameLen(n int) int { return frame.HeaderSize(n) + n }

// roundTrip writes req and reads exactly want bytes back. It allocates
// nothing on success.
func (pc *perfConn) roundTrip(req []byte, want int) error {
	if _, err := pc.c.Write(req); err != nil {
		return err
	}
	got := 0
	for got < want {
		n, err := pc.c.Read(pc.buf[got:want])
		got += n
		if err != nil {
			return err
		}
	}
	return nil
}

// perfDrain reads c until it fails, adding every byte read to total. It
// allocates nothing per read.
func perfDrain(pc *perfConn, total *atomic.Int64) {
	buf := pc.buf[:4096]
	for {
		n, err := pc.c.Read(buf)
		total.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// perfWaitBytes spins until total reaches want, or fails after d.
func perfWaitBytes(total *atomic.Int64, want int64, d time.Duration) error {
	var deadline time.Time
	for spins := 0; total.Load() < want; spins++ {
		if spins&1023 == 1023 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(d)
			} else if now.After(deadline) {
				return fmt.Errorf("received %d of %d bytes", total.Load(), want)
			}
		}
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
	return nil
}

// mallocsDuring runs f with the GC off (so sync.Pools are not emptied in the
// middle) and returns the process's Mallocs delta.
func mallocsDuring(f func()) uint64 {
	gc := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(gc)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// allocatingEcho is the negative control: an echo that allocates exactly
// once per message (the copy escapes through perfSink).
type allocatingEcho struct{ BaseHandler }

var perfSink atomic.Pointer[[]byte]

func (allocatingEcho) OnMessage(c *Conn, op ws.OpCode, payload []byte) {
	b := make([]byte, len(payload))
	copy(b, payload)
	perfSink.Store(&b) // &b escapes: b's header and its array; one or two allocs
	c.WriteMessage(op, b)
}

// echoMallocsPerRoundTrip measures mallocs per 64-byte echo round trip.
func echoMallocsPerRoundTrip(t *testing.T, h Handler, rounds int) float64 {
	e := startEngine(t, perfOptions(), h)
	conns := perfDialN(t, e.Addr(), 1)
	defer perfCloseAll(conns)
	pc := conns[0]
	payload := bytes.Repeat([]byte("x"), 64)
	req := perfMaskedFrame(ws.OpText, payload)
	want := perfServerFrameLen(len(payload))
	for i := 0; i < 2000; i++ { // warm up pools, the loop's slices, the netpoller
		if err := pc.roundTrip(req, want); err != nil {
			t.Fatalf("warm-up round trip %d: %v", i, err)
		}
	}
	var err error
	m := mallocsDuring(func() {
		for i := 0; i < rounds && err == nil; i++ {
			err = pc.roundTrip(req, want)
		}
	})
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if got := pc.buf[:want]; got[0] != 0x81 || !bytes.Equal(got[want-len(payload):], payload) {
		t.Fatalf("echo came back as % x", got[:8])
	}
	return float64(m) / float64(rounds)
}

func TestEchoAllocs(t *testing.T) {
	if perfRaceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	const rounds = 10_000
	t.Run("echo", func(t *testing.T) {
		per := echoMallocsPerRoundTrip(t, EchoHandler{}, rounds)
		t.Logf("EchoHandler: %.4f mallocs per 64-byte round trip (client + server, %d rounds)", per, rounds)
		if per >= 0.1 {
			t.Errorf("echo allocates: %.3f mallocs per round trip, want 0 in steady state (< 0.1 with noise)", per)
		}
	})
	// The negative control proves the measurement sees a single allocation
	// per message; if it does not, the assertion above is worthless.
	t.Run("control", func(t *testing.T) {
		per := echoMallocsPerRoundTrip(t, allocatingEcho{}, rounds)
		t.Logf("allocating control handler: %.4f mallocs per round trip", per)
		if per < 0.9 {
			t.Errorf("measurement is blind: a handler allocating once per message shows %.3f mallocs per round trip", per)
		}
	})
}

// perfBroadcastTask is the Task-based fan-out: write s to every upgraded
// connection of l, then drop the reference the poster took for l.
func perfBroadcastTask(l *Loop, arg any) {
	s := arg.(*frame.Shared)
	for _, c := range l.Conns() {
		if c.State() != StateConnecting {
			c.WriteShared(s)
		}
	}
	s.Release()
}

// perfPostShared encodes payload once and posts it to every running loop.
func perfPostShared(e *Engine, payload []byte) {
	s := frame.NewShared(ws.OpText, payload)
	for _, l := range e.Loops() {
		if !l.Running() {
			continue
		}
		s.Retain()
		if !l.Post(Task{Fn: perfBroadcastTask, Arg: s}) {
			s.Release()
		}
	}
	s.Release()
}

// fanout is N drained raw connections on one engine.
type fanout struct {
	e     *Engine
	conns []*perfConn
	total atomic.Int64 // bytes received by all drains
}

func newFanout(tb testing.TB, h Handler, n int) *fanout {
	tb.Helper()
	f := &fanout{e: startEngine(tb, perfOptions(), h)}
	f.conns = perfDialN(tb, f.e.Addr(), n)
	for _, pc := range f.conns {
		go perfDrain(pc, &f.total)
	}
	tb.Cleanup(func() { perfCloseAll(f.conns) })
	return f
}

// sharedMallocsPerBroadcast measures mallocs per Task-based broadcast of a
// 64-byte frame to n connections, in lockstep (each broadcast fully
// delivered before the next).
func sharedMallocsPerBroadcast(t *testing.T, n, rounds int) float64 {
	f := newFanout(t, BaseHandler{}, n)
	payload := bytes.Repeat([]byte("b"), 64)
	per := int64(n * perfServerFrameLen(len(payload)))
	return f.mallocsPerRound(t, per, rounds, func() error {
		perfPostShared(f.e, payload)
		return nil
	})
}

// mallocsPerRound runs send rounds times in lockstep (each round's per bytes
// fully received before the next), after a warm-up, and returns the
// process's mallocs per round.
func (f *fanout) mallocsPerRound(t *testing.T, per int64, rounds int, send func() error) float64 {
	t.Helper()
	var want int64
	run := func(k int) error {
		for i := 0; i < k; i++ {
			if err := send(); err != nil {
				return err
			}
			want += per
			if err := perfWaitBytes(&f.total, want, 10*time.Second); err != nil {
				return err
			}
		}
		return nil
	}
	if err := run(50); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	var err error
	m := mallocsDuring(func() { err = run(rounds) })
	if err != nil {
		t.Fatal(err)
	}
	return float64(m) / float64(rounds)
}

// handlerMallocsPerBroadcast measures the same through BroadcastHandler:
// conns[0] publishes, the n-1 others receive.
func handlerMallocsPerBroadcast(t *testing.T, n, rounds int) float64 {
	f := newFanout(t, BroadcastHandler{}, n)
	payload := bytes.Repeat([]byte("p"), 64)
	req := perfMaskedFrame(ws.OpText, payload)
	per := int64((n - 1) * perfServerFrameLen(len(payload)))
	pub := f.conns[0].c
	return f.mallocsPerRound(t, per, rounds, func() error {
		_, err := pub.Write(req)
		return err
	})
}

// TestSharedWriteAllocs checks that one broadcast costs O(1) allocations,
// not O(receivers): the frame is encoded once (frame.Shared, pooled), each
// loop gets one Post, and each connection only appends to a pooled cork.
func TestSharedWriteAllocs(t *testing.T) {
	if perfRaceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	if testing.Short() {
		t.Skip("opens 2200 connections")
	}
	const rounds = 200
	const slack = 20 // mallocs per broadcast that N=1000 may cost over N=100
	for _, tc := range []struct {
		name    string
		measure func(*testing.T, int, int) float64
	}{
		{"Task+WriteShared", sharedMallocsPerBroadcast},
		{"BroadcastHandler", handlerMallocsPerBroadcast},
	} {
		t.Run(tc.name, func(t *testing.T) {
			small := tc.measure(t, 100, rounds)
			large := tc.measure(t, 1000, rounds)
			t.Logf("mallocs per broadcast: N=100: %.2f, N=1000: %.2f", small, large)
			if large-small >= slack {
				t.Errorf("broadcast allocations grow with receivers: N=100 %.2f, N=1000 %.2f mallocs per broadcast (limit +%d)",
					small, large, slack)
			}
		})
	}
}
