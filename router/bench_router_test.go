package router

// Benchmarks of the router's hot path over real sockets. Receivers are raw
// TCP WebSocket clients (hand-written upgrade, one small read loop each, on
// Go's shared netpoller) that discard everything. The measured call is the
// handler's OnMessage on the sender's own loop, posted as an engine.Task,
// so the numbers are the gateway's decode + route + fan-out (+ flush) cost
// without client-side noise.
//
//	go test -run '^$' -bench 'DecodeAndRoute|RoomFanout|RawBroadcast' -benchmem ./router/

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
)

// benchPayload is the JSON room message every benchmark routes.
var benchPayload = []byte(`{"type":"message","room":"bench","data":{"text":"hello, room","n":42,"tags":["a","b"]}}`)

// benchRig is an engine with N draining receivers and one sender.
type benchRig struct {
	b      *testing.B
	eng    *engine.Engine
	h      engine.Handler
	router *Router // nil for raw broadcast
	sender *engine.Conn
	loop   *engine.Loop
	conns  []net.Conn
	done   chan struct{}
	batch  int
	msg    []byte // what the sender sends; benchPayload unless set
}

// raiseFileLimit lifts the soft open-files limit as far as allowed and
// returns how many receivers fit (both socket ends live in this process).
func raiseFileLimit(want int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return want
	}
	need := uint64(2*want + 200)
	if rl.Max < need {
		try := rl
		try.Cur, try.Max = need, need
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil { // works with CAP_SYS_RESOURCE
			return want
		}
	}
	rl.Cur = rl.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	if fit := int(rl.Cur/2) - 150; fit < want {
		return fit
	}
	return want
}

// rawUpgrade opens a WebSocket connection by hand and returns it after the
// 101 response; bytes after the response head are left unread.
func rawUpgrade(addr, query string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	req := "GET /ws" + query + " HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	var head []byte
	one := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			c.Close()
			return nil, err
		}
		head = append(head, one[0])
	}
	_ = c.SetReadDeadline(time.Time{})
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		c.Close()
		return nil, fmt.Errorf("upgrade refused: %q", head)
	}
	return c, nil
}

func drain(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// newBenchRig starts an engine with h and n receivers. With a router,
// every receiver and the sender join room "bench".
func newBenchRig(b *testing.B, n, loops int, h engine.Handler, r *Router) *benchRig {
	b.Helper()
	eo := engine.Options{Addr: "127.0.0.1:0", Loops: loops, MaxQueueBytes: 64 << 20, WriteHighWater: 32 << 20, WriteLowWater: 1 << 20, TickInterval: time.Second, PingInterval: -1, IdleTimeout: -1}
	e, err := engine.New(eo, h)
	if err != nil {
		b.Fatal(err)
	}
	if r != nil {
		if err := r.Bind(e); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	rig := &benchRig{b: b, eng: e, h: h, router: r, done: make(chan struct{}, 1), msg: benchPayload}
	b.Cleanup(func() {
		for _, c := range rig.conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	var recvQuery, sendQuery string
	join := maskedFrame(0x1, []byte(`{"type":"join","room":"bench"}`))
	if r != nil {
		recvQuery = "?token=" + token(b, auth.Claims{Sub: "recv"})
		sendQuery = "?token=" + token(b, auth.Claims{Sub: "sender"})
	}
	// Dial in parallel, a few at a time.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := rawUpgrade(e.Addr(), recvQuery)
				if err == nil && r != nil {
					_, err = c.Write(join)
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					rig.conns = append(rig.conns, c)
					go drain(c)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("dial receivers: %v (%d up)", firstErr, len(rig.conns))
	}
	sc, err := rawUpgrade(e.Addr(), sendQuery)
	if err != nil {
		b.Fatal(err)
	}
	if r != nil {
		if _, err := sc.Write(join); err != nil {
			b.Fatal(err)
		}
	}
	rig.conns = append(rig.conns, sc)
	go drain(sc)
	senderAddr := sc.LocalAddr().String()

	// Wait until everyone is in (router) or upgraded (raw), then find the
	// sender's engine.Conn on its loop.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r != nil && r.reg.count(KindRoom, []byte("bench")) == n+1 {
			break
		}
		if r == nil && e.OpenConns() == n+1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("receivers not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	found := make(chan *engine.Conn, len(e.Loops()))
	for _, l := range e.Loops() {
		if !l.Post(engine.Task{Fn: func(l *engine.Loop, _ any) {
			for _, c := range l.Conns() {
				if c.RemoteAddr() == senderAddr && c.State() != engine.StateConnecting {
					found <- c
					return
				}
			}
			found <- nil
		}}) {
			found <- nil
		}
	}
	for range e.Loops() {
		if c := <-found; c != nil {
			rig.sender = c
		}
	}
	if rig.sender == nil {
		b.Fatal("sender connection not found")
	}
	rig.loop = rig.sender.Loop()
	// Bounded batches: the loop flushes every receiver between batches.
	rig.batch = max(1, 2048/max(n, 1))
	return rig
}

// runTask is the one preallocated Task argument: posting allocates nothing.
type runTask struct {
	rig *benchRig
	n   int
}

func benchTask(_ *engine.Loop, arg any) {
	t := arg.(*runTask)
	for range t.n {
		t.rig.h.OnMessage(t.rig.sender, ws.OpText, t.rig.msg)
	}
	t.rig.done <- struct{}{}
}

func syncTask(_ *engine.Loop, arg any) { arg.(*benchRig).done <- struct{}{} }

// run routes b.N messages in batches and waits for every loop to finish.
func (rig *benchRig) run(b *testing.B) {
	task := &runTask{rig: rig}
	others := make([]*engine.Loop, 0, len(rig.eng.Loops()))
	for _, l := range rig.eng.Loops() {
		if l != rig.loop && l.Running() {
			others = append(others, l)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for left := b.N; left > 0; {
		task.n = min(rig.batch, left)
		left -= task.n
		rig.loop.Post(engine.Task{Fn: benchTask, Arg: task})
		<-rig.done
		for _, l := range others {
			l.Post(engine.Task{Fn: syncTask, Arg: rig})
			<-rig.done
		}
	}
	b.StopTimer()
	if rig.router != nil {
		st := rig.router.statsFor(b)
		if st.SlowConsumers != 0 || st.DroppedLow != 0 {
			b.Fatalf("receivers fell behind during the benchmark: %+v", st)
		}
	}
}

func (r *Router) statsFor(b *testing.B) ShardStats {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	per, err := r.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var s ShardStats
	for i := range per {
		s.Add(&per[i])
	}
	return s
}

func newBenchRouter(b *testing.B) *Router {
	r, err := New(Options{Auth: auth.Config{Secret: testSecret}, RateMsgs: -1, InstanceID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkDecodeAndRoute: decode + validate + route of one JSON room
// message to 64 receivers. The goal is 0 allocs/op in steady state.
func BenchmarkDecodeAndRoute(b *testing.B) {
	for _, loops := range []int{1, 2} {
		b.Run(fmt.Sprintf("loops=%d", loops), func(b *testing.B) {
			r := newBenchRouter(b)
			rig := newBenchRig(b, 64, loops, r, r)
			rig.run(b)
		})
	}
}

// BenchmarkDecodeAndRouteAcked is BenchmarkDecodeAndRoute with a client id,
// so every message is also answered with `ack {id, mid}`: standalone (at
// once) and through a backplane's confirmations (confirm.go). The ack adds
// no allocation: standalone 0 allocs/op; through the LocalHub the
// message's Remote costs 4 allocs/op with or without an id.
func BenchmarkDecodeAndRouteAcked(b *testing.B) {
	withID := []byte(`{"type":"message","room":"bench","data":{"text":"hello, room","n":42,"tags":["a","b"]},"id":"m-1"}`)
	for _, bp := range []bool{false, true} {
		b.Run(fmt.Sprintf("backplane=%v", bp), func(b *testing.B) {
			o := Options{Auth: auth.Config{Secret: testSecret}, RateMsgs: -1, InstanceID: "bench"}
			if bp {
				o.Backplane = NewLocalHub().Join()
			}
			r, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			rig := newBenchRig(b, 64, 1, r, r)
			rig.msg = withID
			rig.run(b)
		})
	}
}

func benchFanout(b *testing.B, n int, raw bool) {
	n = raiseFileLimit(n)
	var rig *benchRig
	if raw {
		rig = newBenchRig(b, n, 1, engine.BroadcastHandler{}, nil)
	} else {
		r := newBenchRouter(b)
		rig = newBenchRig(b, n, 1, r, r)
	}
	rig.run(b)
	el := b.Elapsed().Seconds()
	b.ReportMetric(float64(n), "receivers")
	if el > 0 {
		b.ReportMetric(float64(b.N)*float64(n)/el, "deliveries/s")
		b.ReportMetric(el*1e9/(float64(b.N)*float64(n)), "ns/delivery")
	}
}

// BenchmarkRoomFanout1k / 10k: one JSON room message to N members (one loop).
func BenchmarkRoomFanout1k(b *testing.B)  { benchFanout(b, 1000, false) }
func BenchmarkRoomFanout10k(b *testing.B) { benchFanout(b, 10000, false) }

// BenchmarkRawBroadcast1k / 10k: engine.BroadcastHandler sending the same
// bytes to the same N receivers: the baseline of the router's fan-out.
func BenchmarkRawBroadcast1k(b *testing.B)  { benchFanout(b, 1000, true) }
func BenchmarkRawBroadcast10k(b *testing.B) { benchFanout(b, 10000, true) }
