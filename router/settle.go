package router

// # Switching connections without losing messages
//
// A user who reconnects make-before-break (open a new connection, wait for
// auth:ok and joined, then close the old one) must get every message that
// was acked while one of its connections was ready. Two races stood in the
// way, both silent:
//
//   - The new connection's subscription was not on the NATS server yet
//     when auth:ok or joined went out (the interest goroutine writes SUB
//     later, and the server processes it later still). A message the
//     server processed in between went to nobody once the client closed
//     the old connection: the old instance dropped it (no member left),
//     the new one never got it.
//   - A message already on its way to the old connection (in the old
//     instance's NATS reader, its receiver, or the loop's inbox; or posted
//     by another loop of the same instance) lost the race against the
//     client's close frame: the loop answered the close and removed the
//     connection first, and the message found no member.
//
// So the router settles both ends:
//
//   - New membership (auth, join, subscribe): the registry and the shard
//     take the connection at once, so deliveries start, but everything
//     written to it (the reply first, then deliveries) is held in the
//     client until a settle round ends; then it goes out in order.
//   - Client close frame: the engine holds back its answer (CloseHolder)
//     until a settle round ends; the connection keeps receiving meanwhile,
//     then the answer follows what was delivered.
//
// A settle round is the backplane's Sync (when it is a Syncer) followed by
// a fence task on every event loop, then the continuation on the
// connection's own loop: everything the NATS server sent before the round
// and everything any loop routed before it is then ahead of the
// continuation in the loop's inbox. Without a Syncer (standalone, LocalHub,
// both synchronous) only the fences run; a single loop without one needs
// nothing.

import (
	"sync/atomic"

	"github.com/wsgate/wsgate/engine"
)

// settleNeeded reports whether answers wait for a settle round at all.
func (r *Router) settleNeeded() bool {
	if _, ok := r.opts.Backplane.(Syncer); ok {
		return true
	}
	return len(r.shards) > 1
}

// settleNeededForJoin reports whether a new membership's reply waits for a
// settle round: only with a Syncer backplane, whose subscriptions take
// effect later (standalone and LocalHub registrations are effective at
// once for every sender).
func (r *Router) settleNeededForJoin() bool {
	_, ok := r.opts.Backplane.(Syncer)
	return ok
}

// afterSettle runs fn on cl's loop after a settle round that starts now,
// if cl is still the same open connection then. Loop goroutine of cl.
func (r *Router) afterSettle(cl *client, fn func(*client)) {
	id := cl.conn.ID()
	target := cl.shard.loop
	cont := engine.Task{Fn: func(_ *engine.Loop, _ any) {
		if cl.conn.ID() != id || cl.conn.App() != cl || cl.conn.State() == engine.StateClosed {
			return
		}
		fn(cl)
	}}
	fence := func() {
		left := &atomic.Int32{}
		left.Store(int32(len(r.shards)))
		arrive := func(*engine.Loop, any) {
			if left.Add(-1) == 0 {
				target.Post(cont)
			}
		}
		for _, s := range r.shards {
			if !s.loop.Post(engine.Task{Fn: arrive}) && left.Add(-1) == 0 {
				target.Post(cont) // a stopped loop has nothing in flight
			}
		}
	}
	if sy, ok := r.opts.Backplane.(Syncer); ok {
		sy.Sync(fence)
		return
	}
	fence()
}

// holdOutput makes everything written to cl wait (in order, in cl.held)
// until a settle round that starts now has ended: cl's new membership is
// then in effect everywhere, and its reply goes out ahead of the first
// delivery it promises. Loop goroutine of cl.
func (r *Router) holdOutput(cl *client) {
	cl.settling++
	r.afterSettle(cl, func(cl *client) {
		cl.settling--
		if cl.settling == 0 {
			cl.shard.drain(cl) // the queue limit was applied as they were held
		}
	})
}

// HoldClose implements engine.CloseHolder: an authenticated client's close
// frame is answered after a settle round, so that what was already on its
// way to the connection reaches it first (see the top of this file).
func (r *Router) HoldClose(c *engine.Conn) bool {
	cl, ok := c.App().(*client)
	if !ok || cl.perms == nil || !r.settleNeeded() {
		return false
	}
	r.afterSettle(cl, func(cl *client) {
		if cl.settling == 0 {
			cl.shard.drain(cl) // held deliveries go ahead of the answer
		}
		cl.conn.AnswerClose()
	})
	return true
}

var _ engine.CloseHolder = (*Router)(nil)
