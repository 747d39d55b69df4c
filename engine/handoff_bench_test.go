package engine

// Micro-benchmarks of the hand-off between loops and of the upgrade path
// (docs/benchmarks.md, "Engine micro-benchmarks"):
//
//	go test ./engine -run '^$' -bench 'Handoff|Upgrade$|WriteShared' -benchmem -benchtime 2s

import (
	"sync/atomic"
	"testing"
)

// handoffBatch is how many messages one loop iteration hands to another
// loop in BenchmarkHandoff: one read carrying a burst of publishes.
const handoffBatch = 64

type handoffCounter struct {
	left atomic.Int64
	done chan struct{}
}

func handoffCountTask(_ *Loop, arg any) {
	c := arg.(*handoffCounter)
	if c.left.Add(-1) == 0 {
		c.done <- struct{}{}
	}
}

// BenchmarkHandoff: one op is one 256-byte-charged message handed from
// loop 0 to loop 1 and run there, handoffBatch per loop iteration.
func BenchmarkHandoff(b *testing.B) {
	e := twoRunningLoopsTB(b)
	from, to := e.Loops()[0], e.Loops()[1]
	cnt := &handoffCounter{done: make(chan struct{}, 1)}
	task := Task{Fn: handoffCountTask, Arg: cnt}
	burst := func(l *Loop, _ any) {
		for i := 0; i < handoffBatch; i++ {
			if !benchHandOne(l, to, task, 256) {
				panic("hand-off refused")
			}
		}
	}
	round := func() {
		cnt.left.Store(handoffBatch)
		if !from.Post(Task{Fn: burst}) {
			b.Fatal("post refused")
		}
		<-cnt.done
	}
	for i := 0; i < 10; i++ {
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += handoffBatch {
		round()
	}
}

// BenchmarkUpgrade: one op is a TCP connect, upgrade request, 101 and
// close, one client at a time.
func BenchmarkUpgrade(b *testing.B) {
	e := startEngine(b, perfOptions(), EchoHandler{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pc, err := perfDial(e.Addr(), nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = pc.c.Close()
	}
}

// twoRunningLoopsTB starts a two-loop engine and opens connections until
// both loops run.
func twoRunningLoopsTB(tb testing.TB) *Engine {
	opts := perfOptions()
	opts.Loops = 2
	e := startEngine(tb, opts, EchoHandler{})
	for i := 0; i < 64 && !(e.Loops()[0].Running() && e.Loops()[1].Running()); i++ {
		pc, err := perfDial(e.Addr(), nil)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = pc.c.Close() })
	}
	if !e.Loops()[0].Running() || !e.Loops()[1].Running() {
		tb.Fatal("loops not running")
	}
	return e
}

// TestHandoffAllocs: handing messages to another loop allocates nothing per
// message once the outbox and the target's inbox have grown; only each
// wake-up costs gnet a queue node (a negative control boxes a fresh
// argument per message and must be seen).
func TestHandoffAllocs(t *testing.T) {
	if perfRaceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	e := twoRunningLoopsTB(t)
	from, to := e.Loops()[0], e.Loops()[1]
	const rounds = 200
	measure := func(allocating bool) float64 {
		cnt := &handoffCounter{done: make(chan struct{}, 1)}
		burst := func(l *Loop, _ any) {
			for i := 0; i < handoffBatch; i++ {
				arg := any(cnt)
				if allocating {
					arg = &handoffBox{cnt}
				}
				if !l.HandoffBytes(to, Task{Fn: handoffBoxedTask, Arg: arg}, 256) {
					panic("hand-off refused")
				}
			}
		}
		round := func() {
			cnt.left.Store(handoffBatch)
			from.Post(Task{Fn: burst})
			<-cnt.done
		}
		for i := 0; i < 20; i++ {
			round()
		}
		m := mallocsDuring(func() {
			for i := 0; i < rounds; i++ {
				round()
			}
		})
		return float64(m) / float64(rounds)
	}
	// What a round allocates is per wake-up, not per message: gnet's
	// Execute takes a queue node for each of the round's two wake-ups (the
	// test's Post to loop 0 and the one hand-over to loop 1).
	if per := measure(false); per > 8 {
		t.Errorf("hand-off allocates: %.2f mallocs per round of %d messages, want only the round's wake-ups (<= 8)", per, handoffBatch)
	} else {
		t.Logf("%.2f mallocs per round of %d handed-off messages (%.4f per message)", per, handoffBatch, per/handoffBatch)
	}
	if per := measure(true); per < 0.9*handoffBatch {
		t.Errorf("measurement is blind: one allocation per message shows as %.2f per round of %d", per, handoffBatch)
	}
}

type handoffBox struct{ c *handoffCounter }

var handoffSink atomic.Pointer[handoffBox]

func handoffBoxedTask(l *Loop, arg any) {
	if b, ok := arg.(*handoffBox); ok {
		handoffSink.Store(b)
		handoffCountTask(l, b.c)
		return
	}
	handoffCountTask(l, arg)
}
