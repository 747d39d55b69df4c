package engine

// Throughput and allocation benchmarks of the hot paths, with the raw
// allocation-free clients of alloc_test.go (so allocs/op, which counts the
// whole process, is the server's cost). Clients and gateway share the
// machine's cores: ns figures include the client side's syscalls.
//
//	go test ./engine -run '^$' -bench 'EchoRoundTrip|Broadcast|WriteShared' -benchtime 2s

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkEchoRoundTrip is one client in ping-pong with EchoHandler.
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1024} {
		name := fmt.Sprintf("%dB", size)
		if size >= 1024 {
			name = fmt.Sprintf("%dKiB", size/1024)
		}
		b.Run(name, func(b *testing.B) {
			e := startEngine(b, perfOptions(), EchoHandler{})
			conns := perfDialN(b, e.Addr(), 1)
			defer perfCloseAll(conns)
			pc := conns[0]
			payload := bytes.Repeat([]byte("e"), size)
			req := perfMaskedFrame(ws.OpText, payload)
			want := perfServerFrameLen(size)
			for i := 0; i < 100; i++ {
				if err := pc.roundTrip(req, want); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := pc.roundTrip(req, want); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// broadcastWindow is how many broadcasts may be in flight (sent, not yet
// fully delivered): enough to keep the loops busy, few enough that no
// socket buffer fills and nothing lands in gnet's outbound buffers.
const broadcastWindow = 16

// BenchmarkBroadcast: one publisher, 1000 receivers, BroadcastHandler.
// One op is one published 64-byte message (1000 deliveries).
func BenchmarkBroadcast(b *testing.B) {
	const receivers = 1000
	f := newFanout(b, BroadcastHandler{}, receivers+1)
	payload := bytes.Repeat([]byte("p"), 64)
	req := perfMaskedFrame(ws.OpText, payload)
	per := int64(receivers * perfServerFrameLen(len(payload)))
	pub := f.conns[0].c
	send := func(n int) {
		base := f.total.Load()
		for i := 0; i < n; i++ {
			if i >= broadcastWindow {
				if err := perfWaitBytes(&f.total, base+int64(i-broadcastWindow+1)*per, 30*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := pub.Write(req); err != nil {
				b.Fatal(err)
			}
		}
		if err := perfWaitBytes(&f.total, base+int64(n)*per, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	send(50)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	el := time.Since(start)
	b.StopTimer()
	deliveries := float64(b.N) * receivers
	b.ReportMetric(deliveries/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(el.Nanoseconds())/deliveries, "ns/delivery")
}

// benchWriteShared: one op is one frame.Shared posted as a Task to every
// loop, written with WriteShared to each of n connections.
func benchWriteShared(b *testing.B, n, size int) {
	f := newFanout(b, BaseHandler{}, n)
	payload := bytes.Repeat([]byte("s"), size)
	per := int64(n * perfServerFrameLen(len(payload)))
	send := func(k int) {
		base := f.total.Load()
		for i := 0; i < k; i++ {
			if i >= broadcastWindow {
				if err := perfWaitBytes(&f.total, base+int64(i-broadcastWindow+1)*per, 30*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			perfPostShared(f.e, payload)
		}
		if err := perfWaitBytes(&f.total, base+int64(k)*per, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	send(50)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	el := time.Since(start)
	b.StopTimer()
	deliveries := float64(b.N) * float64(n)
	b.ReportMetric(float64(el.Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(deliveries/el.Seconds(), "deliveries/s")
}

func BenchmarkWriteShared100(b *testing.B)  { benchWriteShared(b, 100, 64) }
func BenchmarkWriteShared1000(b *testing.B) { benchWriteShared(b, 1000, 64) }

// BenchmarkWriteShared100_16KiB is a 16 KiB frame to 100 connections:
// above sharedDirectMin, written from the shared copy with writev.
func BenchmarkWriteShared100_16KiB(b *testing.B) { benchWriteShared(b, 100, 16<<10) }

// BenchmarkWriteShared100_64KiB is a frame of the default -max-message-size
// (64 KiB payload, 64 KiB + 4 on the wire) to 100 connections: written from
// the shared copy too since partialHead counts 32 bits.
func BenchmarkWriteShared100_64KiB(b *testing.B) { benchWriteShared(b, 100, 64<<10) }

// BenchmarkLoopOf is the per-accept lookup of a gnet loop's Loop (OnOpen),
// from several goroutines at once as the loops call it.
//
//	go test ./engine -run '^$' -bench LoopOf -benchmem
func BenchmarkLoopOf(b *testing.B) {
	e := startEngine(b, perfOptions(), EchoHandler{})
	perfCloseAll(perfDialN(b, e.Addr(), 4))
	var gl *gnetLoop
	for _, l := range e.loops {
		if p := l.gl.Load(); p != nil {
			gl = p
		}
	}
	if gl == nil {
		b.Fatal("no loop registered after dialling")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if e.loopOf(gl.EventLoop) == nil {
				b.Fatal("loopOf: nil")
			}
		}
	})
}
