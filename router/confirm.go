package router

// Confirmed acks (docs/architecture.md, "Delivery guarantee").
//
// With a backplane, a client's `ack` for `message`, `publish` and `send`
// means the backplane confirmed the message (NATS: the server answered a
// PING sent after it, so it processed the PUB), not merely that it was
// queued. The sending loop delivers locally at once, queues the message for
// the backplane with its shard's ackQueue as Remote.Confirm, and records a
// pendingAck. The backplane settles messages in order, in batches
// (Confirmer.Confirmed, from its goroutines); the ackQueue collects the
// settlements and posts one task to its loop, which answers every settled
// record: `ack` (or the send ack) on success, `error unavailable` when the
// message may be lost. Nothing is allocated per message once the ring has
// grown to the loop's peak of unsettled publishes (each slot keeps its id
// buffer), and there is no goroutine or closure per request.

import (
	"sync"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// errBackplaneUnavailable is the reply when the backplane could not take or
// confirm a message.
var errBackplaneUnavailable = &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "backplane unavailable"}

// pendingAck is one published client message waiting for its confirmation.
type pendingAck struct {
	seq       uint64
	cl        *client
	id        []byte // the client's message id (may be empty: errors are still told)
	mid       []byte // the gateway message id the receivers see, for the ack
	send      bool   // a `send`: the ack carries delivered and remote
	delivered int
}

// confirmation is one Confirmed call waiting for the loop.
type confirmation struct {
	upTo uint64
	err  error
}

// ackQueue is one shard's publishes waiting for the backplane. The ring and
// seq belong to the shard's loop; done and posted are shared with the
// backplane's goroutines under mu (never held across I/O).
type ackQueue struct {
	s    *shard
	ring []pendingAck // power-of-two size; head and n index it
	head int
	n    int
	seq  uint64 // ConfirmSeq of the last publish handed to the backplane

	mu     sync.Mutex
	done   []confirmation
	spare  []confirmation
	posted bool
}

// next returns the ConfirmSeq for the message about to be published.
func (q *ackQueue) next() uint64 { return q.seq + 1 }

// push records a published message (after the backplane accepted it, so
// its settlement cannot have run yet: that needs this loop).
func (q *ackQueue) push(cl *client, id, mid []byte, send bool, delivered int) {
	q.seq++
	if q.n == len(q.ring) {
		q.grow()
	}
	p := &q.ring[(q.head+q.n)&(len(q.ring)-1)]
	p.seq, p.cl, p.send, p.delivered = q.seq, cl, send, delivered
	p.id = append(p.id[:0], id...)
	p.mid = append(p.mid[:0], mid...)
	q.n++
}

func (q *ackQueue) grow() {
	size := max(64, 2*len(q.ring))
	ring := make([]pendingAck, size)
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// Confirmed implements Confirmer: it queues the settlement and wakes the
// loop once (one task per batch of settlements, not per message).
func (q *ackQueue) Confirmed(upTo uint64, err error) {
	q.mu.Lock()
	q.done = append(q.done, confirmation{upTo: upTo, err: err})
	post := !q.posted
	q.posted = true
	q.mu.Unlock()
	if post && !q.s.loop.Post(engine.Task{Fn: confirmTask, Arg: q}) {
		// The loop is gone (engine stopped): so are its clients.
		q.mu.Lock()
		q.posted = false
		q.done = q.done[:0]
		q.mu.Unlock()
	}
}

// confirmTask answers the settled publishes on the shard's loop.
func confirmTask(_ *engine.Loop, arg any) {
	q := arg.(*ackQueue)
	q.mu.Lock()
	batch := q.done
	q.done, q.spare = q.spare[:0], nil
	q.posted = false
	q.mu.Unlock()
	for _, c := range batch {
		q.settle(c.upTo, c.err)
	}
	q.mu.Lock()
	if q.spare == nil {
		q.spare = batch[:0]
	}
	q.mu.Unlock()
}

// settle answers every record with seq <= upTo.
func (q *ackQueue) settle(upTo uint64, err error) {
	s := q.s
	for q.n > 0 {
		p := &q.ring[q.head]
		if p.seq > upTo {
			return
		}
		cl := p.cl
		p.cl = nil
		q.head = (q.head + 1) & (len(q.ring) - 1)
		q.n--
		if cl.conn.State() >= engine.StateClosing {
			continue
		}
		switch {
		case err != nil:
			s.stats.BackplaneErrors++
			s.out = cl.codec.AppendProtocolError(s.out[:0], errBackplaneUnavailable, p.id)
		case len(p.id) == 0:
			continue
		case p.send:
			s.out = cl.codec.AppendSendAck(s.out[:0], p.id, p.mid, p.delivered, true)
		default:
			s.out = cl.codec.AppendAck(s.out[:0], p.id, p.mid, 0)
		}
		s.write(cl, s.out)
	}
}

// waitConfirm is a one-shot Confirmer for callers that may block
// (PublishService, from the admin API's goroutines).
type waitConfirm chan error

func (w waitConfirm) Confirmed(_ uint64, err error) { w <- err }

// --- after a backplane outage ---------------------------------------------

// backplaneResumed tells every client (all loops) that messages from other
// instances may be missing: the backplane lost its connection and has just
// restored its subscriptions (Host.Resumed).
func (r *Router) backplaneResumed() {
	for _, s := range r.shards {
		s.loop.Post(engine.Task{Fn: backplaneGapTask})
	}
}

// backplaneGapTask sends `gap {reason: "backplane"}` to every authenticated
// client of the loop (each is a receiver of gw.all, so each may have
// missed something).
func backplaneGapTask(l *engine.Loop, _ any) {
	s, ok := l.Data().(*shard)
	if !ok {
		return
	}
	for _, cl := range s.authed {
		if cl.conn.State() >= engine.StateClosing {
			continue
		}
		s.out = appendBackplaneGap(s.out[:0], cl.codec)
		s.write(cl, s.out)
		s.stats.GapsSent++
	}
}

// appendBackplaneGap encodes `{"type":"gap","reason":"backplane"}`: no
// dropped count, because nobody knows how many messages were missed.
func appendBackplaneGap(dst []byte, c wire.Codec) []byte {
	return c.AppendGapReason(dst, wire.GapBackplane)
}
