package natsbp

// # Inbound flow (the receiver side of natsbp.go)
//
// Every interest subscription is a nats.ChanSubscribe onto one shared Go
// channel (Backplane.inbox, PendingMsgs deep): a subscription per address
// must not cost a goroutine. nats.go cannot bound a channel subscription by
// bytes (SetPendingLimits refuses one), so the bound is ours:
//
//   - The pump goroutine only moves messages from the channel into the
//     pending queue, a mutex-guarded slice bounded by PendingBytes (the
//     messages' wire size plus a fixed overhead each). Past the budget it
//     drops the message, counts it (Stats.Dropped) and notes its subject.
//     It never waits on anything but the channel, so the channel stays
//     nearly empty and nats.go's own drops (the channel full) are a last
//     resort.
//   - The receiver goroutine takes the whole queue at once, decodes and
//     delivers each message (the router only posts to event loops, and
//     history gap fills run on their own workers, history.go). A batch of
//     minSpread or more (a backlog) is split by subject hash over
//     ReceiveWorkers goroutines, the receiver one of them: each subject's
//     messages stay in order on one goroutine, and the next batch waits for
//     the whole of this one. Then the receiver hands
//     the router one Remote{Dropped: n} notice per subject that lost
//     messages meanwhile, so the receivers of that address get `gap`.
//     The notice comes after every message queued before the drop.
//   - nats.go's drops, when the channel itself was full, are per
//     subscription and cumulative (Subscription.Dropped), reported by the
//     async error handler once per slow-consumer episode. dropCounter
//     keeps the count already taken per subscription and adds only the
//     difference: in the error handler, as the receiver sees the
//     subscription's later messages, and when Stats is read (the drops of
//     an episode go on silently after the handler ran). So every dropped
//     message is counted exactly once, and by the time anyone reads it.
//
// Messages on history live subjects that are dropped are counted but not
// told: the next message of the room reveals the hole and the gap fill
// fetches them from the stream (history.go).

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// DefaultPendingBytes bounds the bytes of inbound messages waiting for the
// receiver goroutine (Options.PendingBytes).
const DefaultPendingBytes = 64 << 20

// pendingOverhead is charged per queued message beyond its wire size: the
// nats.Msg and its parsed header.
const pendingOverhead = 256

// maxDropSubjects bounds the subjects the pump remembers drops for between
// two receiver passes; past it the drops are told to every receiver (gw.all).
const maxDropSubjects = 1024

// receiverState is the pending queue between the pump and the receiver, and
// the per-subscription drop accounting.
type receiverState struct {
	mu       sync.Mutex
	q        []pendingMsg
	drops    map[string]uint64 // subject -> messages dropped, not yet told
	dropsAll uint64            // dropped past maxDropSubjects: told to everyone
	bytes    atomic.Int64      // queued bytes, the batch being delivered included
	kick     chan struct{}     // the pump woke the receiver (capacity 1)
	limit    int64
	pumped   atomic.Uint64 // messages the pump took from the channel, queued or dropped

	// A Sync round's sentinel (sync.go): the pump queues it past the byte
	// budget, and the receiver signals sentinelDone when it reaches it.
	sentinel     atomic.Pointer[nats.Msg]
	sentinelDone chan *nats.Msg

	// Decode workers (handleSpread): workers[0] is the receiver itself.
	workers  []*decodeWorker
	parts    [][]pendingMsg // the receiver's split of a batch, one per worker
	partDone chan struct{}  // a worker delivered its part
	spread   atomic.Uint64  // batches split over the workers (tests)

	subDrops dropCounter
}

type pendingMsg struct {
	msg      *nats.Msg
	size     int64
	sentinel bool // a Sync round's sentinel, not a message
}

// dropCounter turns nats.go's cumulative per-subscription drop counts into
// exact increments. Any goroutine; under mu.
type dropCounter struct {
	mu       sync.Mutex
	taken    map[*nats.Subscription]int      // drops already counted
	suspects map[*nats.Subscription]struct{} // in or after a slow-consumer episode
	n        atomic.Int32                    // len(suspects), read without mu
}

func (rs *receiverState) init(limit, workers int) {
	if limit <= 0 {
		limit = DefaultPendingBytes
	}
	rs.workers = make([]*decodeWorker, workers)
	for i := range rs.workers {
		rs.workers[i] = &decodeWorker{in: make(chan []pendingMsg, 1)}
	}
	rs.parts = make([][]pendingMsg, workers)
	rs.partDone = make(chan struct{}, workers)
	rs.limit = int64(limit)
	rs.kick = make(chan struct{}, 1)
	rs.sentinelDone = make(chan *nats.Msg, 1)
	rs.drops = map[string]uint64{}
	rs.subDrops.taken = map[*nats.Subscription]int{}
	rs.subDrops.suspects = map[*nats.Subscription]struct{}{}
}

// noteDropLocked records n messages dropped on subject (rs.mu held).
func (rs *receiverState) noteDropLocked(subject string, n uint64) {
	if _, ok := rs.drops[subject]; ok || len(rs.drops) < maxDropSubjects {
		rs.drops[subject] += n
		return
	}
	rs.dropsAll += n
}

func (rs *receiverState) wake() {
	select {
	case rs.kick <- struct{}{}:
	default:
	}
}

// pump moves messages from the NATS channel into the byte-bounded queue.
func (b *Backplane) pump() {
	defer b.wg.Done()
	rs := &b.rx
	for {
		select {
		case <-b.done:
			return
		case msg := <-b.inbox:
			if msg == rs.sentinel.Load() {
				rs.mu.Lock()
				rs.q = append(rs.q, pendingMsg{msg: msg, sentinel: true})
				rs.mu.Unlock()
				rs.wake()
				continue
			}
			size := int64(msg.Size()) + pendingOverhead
			rs.mu.Lock()
			if rs.bytes.Load()+size > rs.limit { // only the receiver lowers bytes meanwhile
				rs.noteDropLocked(msg.Subject, 1)
				rs.mu.Unlock()
				b.dropped.Add(1)
			} else {
				rs.bytes.Add(size)
				rs.q = append(rs.q, pendingMsg{msg: msg, size: size})
				rs.mu.Unlock()
			}
			rs.pumped.Add(1)
			rs.wake()
		}
	}
}

// receive runs the receiver goroutine: it delivers the queued messages in
// order, then tells the router what was dropped meanwhile.
func (b *Backplane) receive() {
	rs := &b.rx
	var batch []pendingMsg
	drops := map[string]uint64{}
	for {
		select {
		case <-b.done:
			return
		case <-rs.kick:
		}
		for {
			rs.mu.Lock()
			batch, rs.q = rs.q, batch[:0]
			drops, rs.drops = rs.drops, drops
			all := rs.dropsAll
			rs.dropsAll = 0
			rs.mu.Unlock()
			if len(batch) == 0 && len(drops) == 0 && all == 0 {
				break
			}
			// A Sync round's sentinel (sync.go) splits the batch: what
			// came before it is delivered, and drops noted before it are
			// told, before the round hears of it.
			start := 0
			for i := range batch {
				if !batch[i].sentinel {
					continue
				}
				if !b.handleSpread(batch[start:i]) {
					return // closing
				}
				for subj, n := range drops {
					b.tellDropped(subj, n)
				}
				clear(drops)
				select { // the receiver is the only sender: room after this
				case <-rs.sentinelDone:
				default:
				}
				rs.sentinelDone <- batch[i].msg
				start = i + 1
			}
			if !b.handleSpread(batch[start:]) {
				return // closing
			}
			for i := range batch {
				if !batch[i].sentinel {
					rs.bytes.Add(-batch[i].size)
				}
				batch[i] = pendingMsg{}
			}
			for subj, n := range drops {
				b.tellDropped(subj, n)
			}
			clear(drops)
			if all > 0 {
				b.deliver(&router.Remote{Kind: router.KindAll, Dropped: all})
			}
		}
	}
}

// minSpread is the smallest batch the receiver spreads over the decode
// workers: below it, waking them costs more than decoding.
const minSpread = 32

// decodeWorker decodes and delivers the messages of its share of the
// subjects (Options.ReceiveWorkers).
type decodeWorker struct {
	in chan []pendingMsg // one part of one batch at a time
	rm router.Remote     // the worker's decoded message (handle)
}

// handleSpread decodes and delivers a batch in order per subject, and so
// per address: on the receiver goroutine alone when the batch is small or
// there is one worker, else split by subject hash over the workers (worker
// 0 is the receiver itself), and returns once all of it is delivered. It
// returns false when the backplane closed meanwhile.
func (b *Backplane) handleSpread(batch []pendingMsg) bool {
	rs := &b.rx
	n := len(rs.workers)
	if n <= 1 || len(batch) < minSpread {
		for i := range batch {
			b.handle(batch[i].msg, &b.rxRemote)
		}
		return true
	}
	for i := range rs.parts {
		rs.parts[i] = rs.parts[i][:0]
	}
	for i := range batch {
		w := subjectHash(batch[i].msg.Subject) % uint32(n)
		rs.parts[w] = append(rs.parts[w], batch[i])
	}
	sent := 0
	for w := 1; w < n; w++ {
		if len(rs.parts[w]) > 0 {
			rs.workers[w].in <- rs.parts[w] // capacity 1, and the worker finished its last part
			sent++
		}
	}
	rs.spread.Add(1)
	for i := range rs.parts[0] {
		b.handle(rs.parts[0][i].msg, &b.rxRemote)
	}
	for ; sent > 0; sent-- {
		select {
		case <-rs.partDone:
		case <-b.done:
			return false
		}
	}
	for i := range rs.parts {
		clear(rs.parts[i]) // no stale *nats.Msg kept alive
	}
	return true
}

// runDecodeWorker is one decode worker's goroutine.
func (b *Backplane) runDecodeWorker(w *decodeWorker) {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case part := <-w.in:
			for i := range part {
				b.handle(part[i].msg, &w.rm)
			}
			b.rx.partDone <- struct{}{} // capacity: one per worker
		}
	}
}

// subjectHash is FNV-1a: which worker decodes a subject's messages.
func subjectHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// handle decodes and delivers one inbound message into rm, which belongs
// to the calling goroutine (the receiver or a decode worker).
func (b *Backplane) handle(msg *nats.Msg, rm *router.Remote) {
	if b.rx.subDrops.n.Load() > 0 {
		b.takeSubDrops(msg.Sub, false)
	}
	if b.hist != nil && b.hist.isLive(msg.Subject) {
		b.hist.receive(msg)
		return
	}
	// One Remote for every message of this goroutine: Host.Deliver keeps
	// nothing of it past the call, so decoding allocates nothing.
	err := b.decode(msg.Subject, msg.Data, rm)
	// decode validated data as ValidJSON would (nesting, number range): a
	// payload the gateway could not deliver to every receiver is an error.
	if err != nil {
		b.decodeErrors.Add(1)
		return
	}
	b.received.Add(1)
	b.deliver(rm)
	*rm = router.Remote{}
}

// tellDropped hands the router a notice that n messages on subject were
// dropped, so the address's receivers get `gap` (receiver goroutine).
func (b *Backplane) tellDropped(subject string, n uint64) {
	if b.hist != nil && b.hist.isLive(subject) {
		return // the room's next message reveals the hole; the gap fill recovers it
	}
	kind, name, ok := b.address(subject)
	if !ok {
		return
	}
	b.deliver(&router.Remote{Kind: kind, Name: name, Dropped: n})
}

// address is the router address of an interest subject.
func (b *Backplane) address(subject string) (router.Kind, string, bool) {
	rest, ok := strings.CutPrefix(subject, b.subjPrefix)
	if !ok {
		return 0, "", false
	}
	switch {
	case rest == "all":
		return router.KindAll, "", true
	case strings.HasPrefix(rest, "room."):
		return router.KindRoom, rest[len("room."):], true
	case strings.HasPrefix(rest, "user."):
		return router.KindUser, rest[len("user."):], true
	case strings.HasPrefix(rest, "chan."):
		return router.KindChannel, rest[len("chan."):], true
	}
	return 0, "", false
}

// slowConsumer is the error handler's part for nats.ErrSlowConsumer: the
// shared channel was full and nats.go dropped messages of sub.
func (b *Backplane) slowConsumer(sub *nats.Subscription) {
	if sub == nil {
		b.opts.Logger.Warn("nats slow consumer without a subscription")
		return
	}
	b.takeSubDrops(sub, true)
}

// takeSubDrops counts the drops of sub not counted yet. The error handler
// marks sub a suspect (episode); from then on the receiver looks at every
// message of it, until the subscription is gone: within an episode nats.go
// drops silently, and nothing it exposes tells when an episode ended. Only
// subscriptions that overflowed the channel pay for the look (one mutex).
func (b *Backplane) takeSubDrops(sub *nats.Subscription, episode bool) {
	dc := &b.rx.subDrops
	dc.mu.Lock()
	if _, suspect := dc.suspects[sub]; !suspect && !episode {
		dc.mu.Unlock()
		return
	}
	total, err := sub.Dropped()
	delta := 0
	if err != nil { // gone (unsubscribed): nothing more to take
		delete(dc.taken, sub)
		delete(dc.suspects, sub)
	} else {
		delta = total - dc.taken[sub]
		dc.taken[sub] = total
		dc.suspects[sub] = struct{}{}
	}
	dc.n.Store(int32(len(dc.suspects)))
	dc.mu.Unlock()
	if delta <= 0 {
		return
	}
	b.dropped.Add(uint64(delta))
	rs := &b.rx
	rs.mu.Lock()
	if b.opts.SharedUserInterest && sub.Subject == b.userWildcard() {
		// nats.go does not say whose messages it dropped: every
		// client hears the gap.
		rs.dropsAll += uint64(delta)
	} else {
		rs.noteDropLocked(sub.Subject, uint64(delta))
	}
	rs.mu.Unlock()
	rs.wake()
}

// settleSubDrops takes the drops of every suspect subscription, so that
// Stats is exact when read (any goroutine).
func (b *Backplane) settleSubDrops() {
	dc := &b.rx.subDrops
	if dc.n.Load() == 0 {
		return
	}
	dc.mu.Lock()
	subs := make([]*nats.Subscription, 0, len(dc.suspects))
	for s := range dc.suspects {
		subs = append(subs, s)
	}
	dc.mu.Unlock()
	for _, s := range subs {
		b.takeSubDrops(s, false)
	}
}
