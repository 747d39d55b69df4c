package natsbp

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// These benchmarks weigh the two ways of addressing users (docs/architecture.md):
// per-user subscriptions (what natsbp does) against a presence registry in
// NATS KV that maps users to instances. Run:
//
//	go test ./router/natsbp -run '^$' -bench 'UserScheme' -benchtime 1x
//
// Each reports the cost of bringing 100k users online on one instance and
// of one send to a user; both NATS server and client run in this process, so
// the heap figures cover both.

const schemeUsers = 100_000

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func BenchmarkUserSchemeSubscriptions(b *testing.B) {
	for i := 0; i < b.N; i++ {
		ns := startNATS(b, 0)
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		sender, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		inbox := make(chan *nats.Msg, 1024)
		before := heapInUse()
		start := time.Now()
		for u := 0; u < schemeUsers; u++ {
			if _, err := nc.ChanSubscribe("gw.user.u"+strconv.Itoa(u), inbox); err != nil {
				b.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		online := time.Since(start)
		perUser := float64(heapInUse()-before) / schemeUsers
		// One send: a single publish; the server routes it to the one subscriber.
		const sends = 10_000
		start = time.Now()
		for s := 0; s < sends; s++ {
			if err := sender.Publish("gw.user.u"+strconv.Itoa(s*7%schemeUsers), []byte(`{"data":1}`)); err != nil {
				b.Fatal(err)
			}
			<-inbox
		}
		perSend := time.Since(start) / sends
		b.ReportMetric(float64(online.Nanoseconds())/schemeUsers, "ns/user-online")
		b.ReportMetric(perUser, "heap-B/user")
		b.ReportMetric(float64(perSend.Nanoseconds()), "ns/send")
		nc.Close()
		sender.Close()
	}
}

func BenchmarkUserSchemeKVRegistry(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "presence", Storage: jetstream.MemoryStorage})
		if err != nil {
			b.Fatal(err)
		}
		inst, err := nc.SubscribeSync("gw.inst.a")
		if err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		start := time.Now()
		// Bringing a user online is a KV write (async publishes, acked in bulk).
		for u := 0; u < schemeUsers; u++ {
			if _, err := js.PublishAsync("$KV.presence.u"+strconv.Itoa(u), []byte("a")); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			b.Fatal("kv writes not acked")
		}
		online := time.Since(start)
		perUser := float64(heapInUse()-before) / schemeUsers
		// One send: look the user up, then publish to the instance inbox.
		const sends = 10_000
		start = time.Now()
		for s := 0; s < sends; s++ {
			e, err := kv.Get(ctx, "u"+strconv.Itoa(s*7%schemeUsers))
			if err != nil {
				b.Fatal(err)
			}
			if err := nc.Publish("gw.inst."+string(e.Value()), []byte(`{"data":1}`)); err != nil {
				b.Fatal(err)
			}
			if _, err := inst.NextMsg(5 * time.Second); err != nil {
				b.Fatal(err)
			}
		}
		perSend := time.Since(start) / sends
		b.ReportMetric(float64(online.Nanoseconds())/schemeUsers, "ns/user-online")
		b.ReportMetric(perUser, "heap-B/user")
		b.ReportMetric(float64(perSend.Nanoseconds()), "ns/send")
		cancel()
		nc.Close()
		s.Shutdown()
	}
}
