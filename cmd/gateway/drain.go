package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
)

// drainTick is how often the drainer asks each loop to close the
// connections whose moment has come.
const drainTick = 10 * time.Millisecond

// drainer carries out the graceful shutdown of PROTOCOL.md section 7:
//
//  1. The engine refuses new upgrades with 503 (Engine.SetDraining); the
//     caller has already turned /readyz to 503.
//  2. On each loop, a Task gives every upgraded connection a random moment
//     in [0, drain time) and, in router mode, sends it
//     {"type":"reconnect","after_ms":<that moment>} at once. Echo and
//     broadcast modes speak raw WebSocket and get no message.
//  3. Every drainTick a Task per loop closes, with 1001, the connections
//     whose moment has passed (their plan is sorted by moment, so a tick
//     costs only what it closes). Conn.Close queues the close frame behind
//     whatever is already queued, so nothing queued is lost; the engine
//     closes TCP when the client answers or after -close-timeout.
//  4. It waits, bounded by ctx, for the connections to be gone.
//
// Everything that touches a connection runs on its loop; the drainer's own
// goroutine only posts Tasks.
type drainer struct {
	eng  *engine.Engine
	rt   *router.Router // nil in echo and broadcast modes
	span time.Duration
	log  *slog.Logger
}

// loopPlan is one loop's share of the drain. Owned by that loop (it is only
// touched by Tasks posted to it), except posted, which the drainer sets.
type loopPlan struct {
	d      *drainer
	start  time.Time
	items  []drainItem // sorted by at
	next   int
	closed int
	posted atomic.Bool // a closeDue Task is in the loop's inbox
	done   chan struct{}
	once   sync.Once
}

type drainItem struct {
	c  *engine.Conn
	at time.Duration // since start
}

// run drains and returns once every connection is closed or ctx ends.
func (d *drainer) run(ctx context.Context) {
	d.eng.SetDraining(true)
	start := time.Now()
	loops := d.eng.Loops()
	plans := make([]*loopPlan, len(loops))
	for i, l := range loops {
		p := &loopPlan{d: d, start: start, done: make(chan struct{})}
		if l.Post(engine.Task{Fn: planTask, Arg: p}) {
			plans[i] = p
		}
	}
	d.log.Info("draining", "drain_time", d.span, "open", d.eng.OpenConns())

	t := time.NewTicker(drainTick)
	defer t.Stop()
	for pending := true; pending; {
		select {
		case <-ctx.Done():
			d.log.Warn("drain cut short", "err", ctx.Err(), "open", d.eng.OpenConns())
			return
		case <-t.C:
		}
		pending = false
		for i, p := range plans {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				continue
			default:
			}
			pending = true
			if p.posted.CompareAndSwap(false, true) {
				if !loops[i].Post(engine.Task{Fn: closeDueTask, Arg: p}) {
					p.finish() // the loop has stopped: nothing left to close there
				}
			}
		}
	}
	// Every close frame is out; wait for the closing handshakes (the engine
	// drops a connection whose client does not answer after -close-timeout).
	for d.eng.OpenConns() > 0 {
		select {
		case <-ctx.Done():
			d.log.Warn("drain: connections still open", "open", d.eng.OpenConns())
			return
		case <-t.C:
		}
	}
	d.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

func (p *loopPlan) finish() { p.once.Do(func() { close(p.done) }) }

// planTask runs on a loop: it picks each upgraded connection's moment, sends
// the reconnect notice, and sorts the plan.
func planTask(l *engine.Loop, arg any) {
	p := arg.(*loopPlan)
	d := p.d
	for _, c := range l.Conns() {
		if s := c.State(); s == engine.StateConnecting || s >= engine.StateClosing {
			continue // a pending upgrade will be refused with 503
		}
		var at time.Duration
		if d.span > 0 {
			at = rand.N(d.span)
		}
		if d.rt != nil {
			// after_ms is whole milliseconds, so floor the moment to match:
			// the close never comes before the moment the client was told.
			at = at.Truncate(time.Millisecond)
			d.rt.SendReconnect(c, at)
		}
		p.items = append(p.items, drainItem{c: c, at: at})
	}
	slices.SortFunc(p.items, func(a, b drainItem) int { return int(a.at - b.at) })
	closeDue(p)
}

// closeDueTask runs on a loop every drainTick.
func closeDueTask(_ *engine.Loop, arg any) {
	p := arg.(*loopPlan)
	p.posted.Store(false)
	closeDue(p)
}

// closeDue closes, with 1001, every planned connection whose moment passed.
// A connection that closed meanwhile is skipped by Conn.Close itself.
func closeDue(p *loopPlan) {
	now := time.Since(p.start)
	for p.next < len(p.items) && p.items[p.next].at <= now {
		it := &p.items[p.next]
		it.c.Close(engine.CloseGoingAway, "server shutting down")
		it.c = nil
		p.next++
		p.closed++
	}
	if p.next == len(p.items) {
		p.finish()
	}
}
