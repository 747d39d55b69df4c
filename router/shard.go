package router

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// memberSet is the local members of one room, channel or user on one loop:
// a slice, so fan-out walks contiguous memory, with O(1) removal by swapping
// in the last element (each client remembers its index per membership).
type memberSet struct {
	list []*client
}

// shard is one event loop's routing tables. Only that loop's goroutine
// touches it: lookups and fan-out take no lock.
type shard struct {
	r      *Router
	loop   *engine.Loop
	tables [3]map[string]*memberSet // KindRoom, KindUser, KindChannel
	authed []*client                // every authenticated client (gw.all)
	env    wire.Envelope            // decode scratch, reused per message
	out    []byte                   // reply encoding scratch
	tmp    []byte                   // transcoding scratch
	msgSeq uint64                   // per-loop message id counter
	stats  ShardStats
	lat    LatencyHistogram // sampled delivery latency (stats.go)
	gaps   gapBook          // dropped handoffs to this loop, until it tells the clients (any goroutine)
	acks   ackQueue         // publishes waiting for the backplane's confirmation (confirm.go)
	rpc    rpcTable         // rpc requests in flight (rpc.go)
	hooks  hookBook         // hook requests in flight (hooks.go)

	pubMu sync.Mutex    // guards pub
	pub   ShardSnapshot // counters as of the loop's last tick, for readers that must not wait (Router.Snapshot)
}

// maxGapAddrs bounds the addresses a gapBook remembers; drops for more
// addresses than that before the loop runs are told to every client of the
// loop instead.
const maxGapAddrs = 1024

// gapBook is one loop's record of data handoffs that were refused because
// the loop's inbox byte budget was spent (engine.Loop.PostBytes), or that
// the backplane lost, per address, until the loop turns them into `gap`
// messages to the members. Any goroutine records, under mu; the loop
// drains (gapTask). It is small and bounded: at most maxGapAddrs addresses,
// past which the count goes to all (every authenticated client of the loop
// is told).
type gapBook struct {
	mu     sync.Mutex
	addrs  map[gapAddr]uint64 // address -> messages dropped
	spare  map[gapAddr]uint64 // the drained map, reused (loop; swapped under mu)
	all    uint64             // drops for gw.all, or past maxGapAddrs
	posted bool               // a gapTask is in the loop's inbox

	dropped atomic.Uint64 // messages this loop's inbox refused (ShardStats.InboxDropped)
}

type gapAddr struct {
	kind Kind
	name string
}

// ShardStats are one loop's routing counters (folded at scrape time).
type ShardStats struct {
	MessagesRouted  uint64 // client and backplane messages fanned out
	Deliveries      uint64 // frames queued to receivers
	DroppedLow      uint64 // low-priority drops above the high-water mark
	Held            uint64 // normal-priority messages held while backlogged
	GapsSent        uint64
	RateLimited     uint64
	RateKicks       uint64
	AuthFailures    uint64
	BackplaneErrors uint64
	SlowConsumers   uint64
	// InboxDropped counts messages for this loop's receivers that the loop
	// never got because its inbox byte budget (-loop-inbox-bytes) was spent.
	// Their receivers get `gap {reason: overload}`, as do those of messages
	// the backplane lost (Remote.Dropped; counted by the backplane).
	InboxDropped uint64
	// OverloadGaps counts the overload gap messages sent (also in GapsSent).
	OverloadGaps uint64
	// Undeliverable counts deliveries skipped because the data has no form
	// in the receiver's codec (a msgpack ext or NaN for a JSON receiver).
	Undeliverable uint64
	// MaxQueued is the largest outbound queue (engine-queued plus held
	// bytes, including the message itself) that any accepted delivery on
	// this loop produced; flow control keeps it at or below MaxQueueBytes.
	MaxQueued int
	// Token lifetime (refresh.go): refreshes by outcome, token_expired
	// sent, and connections closed with 4011.
	RefreshOK        uint64
	RefreshForbidden uint64
	RefreshInvalid   uint64
	TokensExpired    uint64
	ExpiryCloses     uint64
}

// Add folds o into s (MaxQueued takes the maximum).
func (s *ShardStats) Add(o *ShardStats) {
	s.MessagesRouted += o.MessagesRouted
	s.Deliveries += o.Deliveries
	s.DroppedLow += o.DroppedLow
	s.Held += o.Held
	s.GapsSent += o.GapsSent
	s.RateLimited += o.RateLimited
	s.RateKicks += o.RateKicks
	s.AuthFailures += o.AuthFailures
	s.BackplaneErrors += o.BackplaneErrors
	s.SlowConsumers += o.SlowConsumers
	s.InboxDropped += o.InboxDropped
	s.OverloadGaps += o.OverloadGaps
	s.Undeliverable += o.Undeliverable
	s.MaxQueued = max(s.MaxQueued, o.MaxQueued)
	s.RefreshOK += o.RefreshOK
	s.RefreshForbidden += o.RefreshForbidden
	s.RefreshInvalid += o.RefreshInvalid
	s.TokensExpired += o.TokensExpired
	s.ExpiryCloses += o.ExpiryCloses
}

// Stats returns each running loop's routing counters, copied on the loop
// itself (like engine.Engine.Stats), so readers never race with it. A loop
// that never had a connection reports zeros.
func (r *Router) Stats(ctx context.Context) ([]ShardStats, error) {
	return engine.Collect(ctx, r.eng.Loops(), func(l *engine.Loop) ShardStats {
		if sh, ok := l.Data().(*shard); ok {
			return sh.statsCopy()
		}
		return ShardStats{}
	})
}

// statsCopy is the loop's counters, with those kept in atomics (on the loop).
func (s *shard) statsCopy() ShardStats {
	st := s.stats
	st.InboxDropped = s.gaps.dropped.Load()
	return st
}

// publishSnapshot copies the counters where Router.Snapshot can read them
// without waiting for the loop. Loop only (OnTick).
func (s *shard) publishSnapshot() {
	snap := ShardSnapshot{Stats: s.statsCopy(), Latency: s.lat, RPC: s.rpc.statsCopy()}
	s.pubMu.Lock()
	s.pub = snap
	s.pubMu.Unlock()
}

// published returns the counters of the loop's last tick. Any goroutine.
func (s *shard) published() ShardSnapshot {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	return s.pub
}

func newShard(l *engine.Loop, r *Router) *shard {
	s := &shard{loop: l, r: r}
	s.gaps.addrs = map[gapAddr]uint64{}
	s.acks.s = s
	for i := range s.tables {
		s.tables[i] = map[string]*memberSet{}
	}
	return s
}

// membership ties a client to one memberSet.
type membership struct {
	name string
	set  *memberSet
	idx  int32
	kind Kind // after idx: the struct is 32 bytes, not 40
}

// join adds cl to the set of (kind, name) on this loop.
func (s *shard) join(cl *client, kind Kind, name string) {
	set := s.tables[kind][name]
	if set == nil {
		set = &memberSet{}
		s.tables[kind][name] = set
	}
	cl.members = append(cl.members, membership{kind: kind, name: name, set: set, idx: int32(len(set.list))})
	set.list = append(set.list, cl)
}

// leave removes cl's membership i.
func (s *shard) leave(cl *client, i int) {
	m := cl.members[i]
	set := m.set
	last := len(set.list) - 1
	moved := set.list[last]
	set.list[m.idx] = moved
	set.list[last] = nil
	set.list = set.list[:last]
	if moved != cl {
		for j := range moved.members {
			if moved.members[j].set == set {
				moved.members[j].idx = m.idx
				break
			}
		}
	}
	if len(set.list) == 0 {
		delete(s.tables[m.kind], m.name)
	}
	cl.members[i] = cl.members[len(cl.members)-1]
	cl.members = cl.members[:len(cl.members)-1]
}

// addAuthed registers cl for gw.all.
func (s *shard) addAuthed(cl *client) {
	cl.authedIdx = int32(len(s.authed))
	s.authed = append(s.authed, cl)
}

func (s *shard) removeAuthed(cl *client) {
	i := cl.authedIdx
	if i < 0 || int(i) >= len(s.authed) || s.authed[i] != cl {
		return
	}
	last := len(s.authed) - 1
	s.authed[i] = s.authed[last]
	s.authed[i].authedIdx = i
	s.authed[last] = nil
	s.authed = s.authed[:last]
	cl.authedIdx = -1
}
