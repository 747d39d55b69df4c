package router

// Lifecycle events and the outbound half of hooks (PROTOCOL.md section 10).
//
// Event loops never touch NATS: they append an item (subject, optional
// reply token, hand-written JSON body) to the upstream queue, bounded by
// bytes, and return. One goroutine drains the queue and calls
// Upstream.UpstreamPublish. When the queue is full an event is dropped and
// counted, and a hook request fails at once as unavailable: nothing a
// client does ever waits for NATS.

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/wire"
)

// Upstream is the optional Backplane ability behind lifecycle events and
// hooks, found by a type assertion on Options.Backplane (natsbp has it).
type Upstream interface {
	// UpstreamPrefix is the subject prefix ("gw").
	UpstreamPrefix() string
	// UpstreamPublish publishes body on subject. With token != 0 it asks
	// for an answer: the reply subject routes it to the function given to
	// ServeUpstreamReplies, with the same token. Called from one router
	// goroutine only; it may block briefly.
	UpstreamPublish(subject string, token uint64, body []byte) error
	// ServeUpstreamReplies gives the backplane the function that takes
	// answers (any goroutine; it never blocks). noResponders says NATS
	// found nobody subscribed to the request's subject. Called once,
	// before Start.
	ServeUpstreamReplies(fn func(token uint64, data []byte, noResponders bool))
}

// DefaultEventQueueBytes bounds the bytes of events and hook requests
// waiting for the upstream goroutine.
const DefaultEventQueueBytes = 4 << 20

// upItem is one queued publish.
type upItem struct {
	subject string
	token   uint64 // hook request id; 0 for an event
	body    []byte
}

// upstreamQueue feeds the upstream goroutine. Any loop appends (under
// mu); the goroutine swaps the slice out and publishes.
type upstreamQueue struct {
	up       Upstream
	maxBytes int
	// unsent is told of a hook request that could not be published
	// (NATS down), so that it is answered unavailable at once rather
	// than at its timeout.
	unsent func(token uint64)

	mu      sync.Mutex
	items   []upItem
	spare   []upItem
	bytes   int
	closed  bool
	wake    chan struct{} // capacity 1: "items is not empty"
	stopped chan struct{}

	published, dropped, failed atomic.Uint64 // events
}

func newUpstreamQueue(up Upstream, maxBytes int, unsent func(token uint64)) *upstreamQueue {
	q := &upstreamQueue{up: up, maxBytes: maxBytes, unsent: unsent, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go q.run()
	return q
}

// push queues one publish; false when the byte budget is spent (or the
// queue closed). Never blocks.
func (q *upstreamQueue) push(subject string, token uint64, body []byte) bool {
	size := len(subject) + len(body)
	q.mu.Lock()
	if q.closed || (q.bytes > 0 && q.bytes+size > q.maxBytes) {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, upItem{subject: subject, token: token, body: body})
	q.bytes += size
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *upstreamQueue) run() {
	defer close(q.stopped)
	for {
		<-q.wake
		q.mu.Lock()
		batch, closed := q.items, q.closed
		q.items, q.spare = q.spare[:0], nil
		q.bytes = 0
		q.mu.Unlock()
		for i := range batch {
			it := &batch[i]
			err := q.up.UpstreamPublish(it.subject, it.token, it.body)
			switch {
			case it.token != 0 && err != nil:
				q.unsent(it.token)
			case it.token != 0:
			case err != nil:
				q.failed.Add(1)
			default:
				q.published.Add(1)
			}
			batch[i] = upItem{}
		}
		q.mu.Lock()
		q.spare = batch[:0]
		q.mu.Unlock()
		if closed {
			return
		}
	}
}

// close publishes what is queued, then stops the goroutine (bounded).
func (q *upstreamQueue) close(timeout time.Duration) {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case <-q.stopped:
	case <-time.After(timeout):
	}
}

// EventStats are the counters of lifecycle events.
type EventStats struct {
	Published uint64 // handed to NATS
	Dropped   uint64 // queue full, or NATS refused them
}

// EventStats returns the lifecycle event counters (zero with -events off).
func (r *Router) EventStats() EventStats {
	q := r.upq
	if q == nil {
		return EventStats{}
	}
	return EventStats{Published: q.published.Load(), Dropped: q.dropped.Load() + q.failed.Load()}
}

// Event names (subjects <prefix>.event.<name>[.<room>]).
const (
	eventConnect    = "connect"
	eventDisconnect = "disconnect"
	eventJoin       = "join"
	eventLeave      = "leave"
)

// event publishes one lifecycle event of cl (its loop), fire and forget.
// room is set for join and leave, code for disconnect.
func (r *Router) event(cl *client, name, room string, code int) {
	q := r.upq
	if q == nil || !r.opts.Events {
		return
	}
	var subject string
	switch name {
	case eventConnect:
		subject = r.upConnect
	case eventDisconnect:
		subject = r.upDisconnect
	default:
		subject = r.upPrefix + ".event." + name + "." + room // one allocation
	}
	b := make([]byte, 0, 96+len(cl.user)+len(room)+len(r.opts.InstanceID))
	b = append(b, `{"user":`...)
	b = wire.AppendJSONString(b, cl.user)
	b = append(b, `,"conn":"`...)
	b = strconv.AppendUint(b, cl.conn.ID(), 36)
	b = append(b, '"')
	if room != "" {
		b = append(b, `,"room":`...)
		b = wire.AppendJSONString(b, room)
	}
	b = append(b, `,"instance":`...)
	b = wire.AppendJSONString(b, r.opts.InstanceID)
	if name == eventDisconnect {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	b = append(b, '}')
	if !q.push(subject, 0, b) {
		q.dropped.Add(1)
	}
}
