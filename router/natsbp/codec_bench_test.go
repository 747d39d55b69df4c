package natsbp

import (
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// Per-message cost of the backplane's wire format (docs/benchmarks.md,
// "Backplane per message"). Run:
//
//	go test ./router/natsbp -run '^$' -bench 'Backplane' -benchmem
//
// PublishEncode and ReceiveDecode are the codec alone (one goroutine, no
// NATS); Publish and Receive go through a real NATS server in this process,
// so their allocation figures include nats.go's and the server's own.

// benchRemote is a typical room message from a client, as the router hands
// it to Publish.
func benchRemote() *router.Remote {
	return &router.Remote{Kind: router.KindRoom, Name: "lobby", From: "alice", ID: "gw-1-3-1a2b", TS: 1764748800123,
		Origin: "gw-1", Data: []byte(`{"text":"hello, world","n":42,"tags":["a","b"]}`)}
}

// benchPayload is benchRemote as it crosses NATS.
var benchPayload = []byte(`{"data":{"text":"hello, world","n":42,"tags":["a","b"]},"from":"alice","id":"gw-1-3-1a2b","ts":1764748800123,"origin":"gw-1"}`)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func BenchmarkBackplanePublishEncode(b *testing.B) {
	m := benchRemote()
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	for b.Loop() {
		buf = appendMessage(buf[:0], m, 0)
	}
	if string(buf) != string(benchPayload) {
		b.Fatalf("encoded %s", buf)
	}
}

func BenchmarkBackplaneReceiveDecode(b *testing.B) {
	bp := New(Options{Logger: quietLogger()})
	var n atomic.Int64
	bp.deliver = func(*router.Remote) { n.Add(1) }
	msg := &nats.Msg{Subject: "gw.room.lobby", Data: benchPayload}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	for b.Loop() {
		bp.handle(msg, &bp.rxRemote)
	}
	if bp.decodeErrors.Load() != 0 || n.Load() == 0 {
		b.Fatalf("decode errors %d, delivered %d", bp.decodeErrors.Load(), n.Load())
	}
}

// startBenchBackplane starts a backplane on ns whose only local receivers
// are in room lobby, delivering to deliver.
func startBenchBackplane(b *testing.B, url, id string, deliver func(*router.Remote)) *Backplane {
	bp := New(Options{URLs: []string{url}, Logger: quietLogger()})
	err := bp.Start(id, router.Host{
		Deliver:   deliver,
		HasLocal:  func(kind router.Kind, name string) bool { return kind == router.KindRoom && name == "lobby" },
		EachLocal: func(fn func(router.Kind, string)) { fn(router.KindRoom, "lobby") },
		Resumed:   func() {},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bp.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !bp.Ready() {
		if time.Now().After(deadline) {
			b.Fatal("backplane not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return bp
}

// BenchmarkBackplanePublish: Publish through the publisher goroutine to a
// real NATS server (confirmed batches), per message.
func BenchmarkBackplanePublish(b *testing.B) {
	ns := startNATS(b, 0)
	bp := startBenchBackplane(b, ns.ClientURL(), "a", func(*router.Remote) {})
	m := benchRemote()
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := bp.Stats().Published
	for i := 0; i < b.N; i++ {
		// A backlog of at most 4096 messages (a batch): the steady state
		// of a publisher that keeps up, not a queue filling up.
		for int64(i)-int64(bp.Stats().Published-start) > maxBatch {
			time.Sleep(10 * time.Microsecond)
		}
		if err := bp.Publish(m); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for bp.Stats().Published-start < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("published %d of %d", bp.Stats().Published-start, b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkBackplaneReceive: messages published by a plain NATS client (a
// service) on gw.room.lobby, received, decoded and delivered by the
// backplane, per message.
func BenchmarkBackplaneReceive(b *testing.B) {
	ns := startNATS(b, 0)
	var got atomic.Int64
	bp := startBenchBackplane(b, ns.ClientURL(), "a", func(rm *router.Remote) {
		if rm.Dropped == 0 && len(rm.Data) > 0 {
			got.Add(1)
		}
	})
	bp.Interest(router.KindRoom, "lobby")
	deadline := time.Now().Add(10 * time.Second)
	for bp.Stats().Subscriptions < 2 {
		if time.Now().After(deadline) {
			b.Fatal("not subscribed")
		}
		time.Sleep(time.Millisecond)
	}
	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := svc.Publish("gw.room.lobby", benchPayload); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 { // bounded in flight: no slow-consumer drops
			for got.Load() < int64(i-4096) {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	if err := svc.Flush(); err != nil {
		b.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for got.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d (dropped %d, decode errors %d)", got.Load(), b.N, bp.Stats().Dropped, bp.Stats().DecodeErrors)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkBackplaneReceiveSpread: one batch of 1024 queued messages over
// 64 rooms decoded and delivered (no-op) by 1, 2 or 4 goroutines
// (Options.ReceiveWorkers), per message; no NATS.
func BenchmarkBackplaneReceiveSpread(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			bp := New(Options{ReceiveWorkers: workers, Logger: quietLogger()})
			bp.deliver = func(*router.Remote) {}
			for _, w := range bp.rx.workers[1:] {
				bp.wg.Add(1)
				go bp.runDecodeWorker(w)
			}
			defer func() { close(bp.done); bp.wg.Wait() }()
			batch := make([]pendingMsg, 1024)
			for i := range batch {
				batch[i].msg = &nats.Msg{Subject: "gw.room.r" + strconv.Itoa(i%64), Data: benchPayload}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(batch) * len(benchPayload)))
			for b.Loop() {
				bp.handleSpread(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/msg")
			if bp.decodeErrors.Load() != 0 {
				b.Fatal("decode errors")
			}
		})
	}
}
