package router

import (
	"context"
	"time"

	"github.com/wsgate/wsgate/engine"
)

// LatencySampleEvery is the sampling rate of the delivery latency histogram:
// one delivery in this many (per loop) is timed.
const LatencySampleEvery = 64

// LatencyBuckets are the upper bounds, in seconds, of the delivery latency
// histogram (accept to write): from 25µs to 5s.
var LatencyBuckets = [...]float64{
	0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

// latencyBoundsNS are LatencyBuckets in nanoseconds, for the loop's compare.
var latencyBoundsNS = func() (b [len(LatencyBuckets)]int64) {
	for i, s := range LatencyBuckets {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// LatencyHistogram is one loop's sampled delivery latency: the time from the
// moment the gateway took a message in (a client's message decoded, a
// backplane or service message received) to the moment its frame was queued
// on a receiving connection. Plain fields, owned by the loop; not cumulative
// per bucket (Counts[i] is the number of samples in bucket i only; the last
// slot is +Inf).
type LatencyHistogram struct {
	Counts [len(LatencyBuckets) + 1]uint64
	Count  uint64
	SumNS  int64
}

// observe records one sample.
func (h *LatencyHistogram) observe(ns int64) {
	i := 0
	for i < len(latencyBoundsNS) && ns > latencyBoundsNS[i] {
		i++
	}
	h.Counts[i]++
	h.Count++
	h.SumNS += ns
}

// Add folds o into h.
func (h *LatencyHistogram) Add(o *LatencyHistogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.Count += o.Count
	h.SumNS += o.SumNS
}

// monoEpoch anchors monoNow: time.Since of a fixed time.Time reads the
// monotonic clock (no wall-clock jumps) and needs no shared state.
var monoEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// sampleLatency is called on the loop after a delivery was queued; it times
// one delivery in LatencySampleEvery.
func (s *shard) sampleLatency(m *outMsg) {
	if s.stats.Deliveries%LatencySampleEvery != 0 || m.born == 0 {
		return
	}
	s.lat.observe(monoNow() - m.born)
}

// ShardSnapshot is one loop's routing counters and latency histogram.
type ShardSnapshot struct {
	Stats   ShardStats
	Latency LatencyHistogram
	RPC     RPCStats // rpc outcomes and latency (rpc.go)
}

// Snapshot returns each loop's counters and latency histogram, copied on the
// loop itself when it answers within a few tens of milliseconds, else the
// copy it published at its last tick (OnTick), so a scrape never waits on a
// busy loop. A loop that never had a connection reports zeros. The error is
// only ctx's.
func (r *Router) Snapshot(ctx context.Context) ([]ShardSnapshot, error) {
	return engine.CollectOrLast(ctx, r.eng.Loops(), func(l *engine.Loop) ShardSnapshot {
		if sh, ok := l.Data().(*shard); ok {
			return ShardSnapshot{Stats: sh.statsCopy(), Latency: sh.lat, RPC: sh.rpc.statsCopy()}
		}
		return ShardSnapshot{}
	}, func(l *engine.Loop) ShardSnapshot {
		// Not l.Data(), which is loop-only: the shards are fixed at Bind.
		return r.shards[l.Index()].published()
	})
}

// OnTick publishes the loop's routing counters for Snapshot (engine.TickHandler).
func (r *Router) OnTick(l *engine.Loop) {
	if sh, ok := l.Data().(*shard); ok {
		sh.sweepRPC() // rpc timeouts (rpc.go)
		sh.publishSnapshot()
		r.expireHooks(sh) // hook timeouts (hooks.go)
	}
}

// Backplane returns the backplane the router was configured with (nil
// standalone), so operators' tools can read its own counters.
func (r *Router) Backplane() Backplane { return r.opts.Backplane }
