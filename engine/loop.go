package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
)

// Task is work handed to a loop from any goroutine. Fn runs on the loop with
// Arg; both are plain values, so posting a Task allocates nothing.
type Task struct {
	Fn  func(l *Loop, arg any)
	Arg any
	// cost is what PostBytes charged against the inbox budget; Run returns
	// it once the task ran.
	cost int
}

// Loop is the wsgate side of one gnet event loop: its connections, timing
// wheel, write corking and inbox. Everything but Post, Index and Engine is
// owned by the loop's goroutine.
type Loop struct {
	// Immutable after creation.
	eng     *Engine
	index   int
	flushAt int                      // cork size that gets a connection written after the current task
	gl      atomic.Pointer[gnetLoop] // set when the loop's first connection opens

	// Inbox: any goroutine, under mu.
	mu        sync.Mutex
	inbox     []Task
	spare     []Task
	triggered bool // an Execute is on its way; no need to wake the loop again

	// inboxBytes is what PostBytes and HandoffBytes charged and Run has not
	// yet run: reserved atomically when the task is posted (so a refusal is
	// known at once, even for a task still waiting in another loop's outbox).
	inboxBytes atomic.Int64

	// Off-loop counters (any goroutine).
	inboxDrops     atomic.Uint64 // PostBytes refusals: the inbox budget was full
	inboxDropBytes atomic.Uint64

	// Published counters: the loop copies its stats here every tick, so
	// Engine.Stats has an answer when the loop is too busy to give one.
	pubMu sync.Mutex
	pub   LoopStats

	// Owned by the loop goroutine.
	wheel   timingWheel
	conns   []*Conn // every open connection of this loop
	dirty   *Conn   // connections with corked bytes, linked by dirtyNext
	full    []*Conn // dirty connections whose cork passed flushAt
	running []Task  // the inbox batch being run
	runPos  int     // next task of running
	backlog []*Conn // connections above the high-water mark
	// backlogPoll re-examines the backlog soon after a quiet iteration
	// (gnet drains its buffer on write events without telling the loop);
	// armed while the backlog is not empty.
	backlogPoll      *time.Timer
	backlogPollArmed bool
	flushPosted      bool // a flush task is in the inbox
	stats            LoopStats
	scratch          []*Conn // reusable iteration buffer
	// Outboxes: hand-offs to other loops made in this iteration, one queue
	// per target loop (by index), handed over once per iteration with one
	// lock and at most one wake-up per target (handOverAll).
	outbox     [][]Task
	outPending []bool  // outbox[i] is non-empty and listed in outTargets
	outTargets []int32 // targets with a non-empty outbox, in first-use order
	handovers  uint64  // outboxes handed over (one inbox lock each), for tests
	nextConnID uint64
	data       any                          // the handler's per-loop state (router shard)
	corkFree   []*bytebufferpool.ByteBuffer // cork buffers kept for reuse by this loop
	iov        [2][]byte                    // writeSharedDirect's writev vector, cleared after each use
}

// Cork buffers are recycled on the loop itself rather than through the
// process-wide bytebufferpool: that pool is shared with every other user,
// recalibrates (dropping big buffers) and is emptied by each GC, which made
// steady-state writes allocate. Buffers over corkKeepMax go back to the pool.
const (
	corkKeepMax   = 16 << 10
	corkFreeLimit = 1024
)

func (l *Loop) getCork() *bytebufferpool.ByteBuffer {
	if n := len(l.corkFree); n > 0 {
		b := l.corkFree[n-1]
		l.corkFree[n-1] = nil
		l.corkFree = l.corkFree[:n-1]
		return b
	}
	return bytebufferpool.Get()
}

func (l *Loop) putCork(b *bytebufferpool.ByteBuffer) {
	if cap(b.B) > corkKeepMax || len(l.corkFree) >= corkFreeLimit {
		bytebufferpool.Put(b)
		return
	}
	b.B = b.B[:0]
	l.corkFree = append(l.corkFree, b)
}

type gnetLoop struct{ gnet.EventLoop }

// Index is the loop's position in Engine.Loops, stable for the engine's life.
func (l *Loop) Index() int { return l.index }

// Engine returns the engine the loop belongs to.
func (l *Loop) Engine() *Engine { return l.eng }

// Data returns the handler's per-loop state (loop goroutine only).
func (l *Loop) Data() any { return l.data }

// SetData attaches the handler's per-loop state (loop goroutine only).
func (l *Loop) SetData(v any) { l.data = v }

// Conns returns the loop's open connections (loop goroutine only; the slice
// is only valid until the loop changes it).
func (l *Loop) Conns() []*Conn { return l.conns }

// Running reports whether the loop has had a connection and so can take
// Posts. A loop that never had one has nothing to deliver to.
func (l *Loop) Running() bool { return l.gl.Load() != nil }

// Post hands t to the loop. Safe from any goroutine. Tasks run in order, in
// one batch per wake-up, after which every connection written by the batch
// is flushed once. It reports false when the loop is not running.
func (l *Loop) Post(t Task) bool {
	t.cost = 0
	return l.post(t, false)
}

// PostBytes is Post for work that carries data (a message to deliver):
// size bytes are charged against the loop's inbox budget
// (Options.InboxBytes) until the task has run. When the budget is spent it
// queues nothing and reports false; the caller owns the drop (count it, tell
// the clients it affects). Safe from any goroutine.
func (l *Loop) PostBytes(t Task, size int) bool {
	t.cost = max(size, 1)
	return l.post(t, true)
}

// InboxDrops returns how many PostBytes calls were refused for a full inbox
// budget, and their bytes. Safe from any goroutine.
func (l *Loop) InboxDrops() (n, bytes uint64) {
	return l.inboxDrops.Load(), l.inboxDropBytes.Load()
}

func (l *Loop) post(t Task, bounded bool) bool {
	if l.gl.Load() == nil {
		return false
	}
	if bounded && !l.reserve(t.cost) {
		return false
	}
	return l.enqueue(t)
}

// reserve charges cost against the inbox budget, or counts a refusal when
// it does not fit. Any goroutine.
func (l *Loop) reserve(cost int) bool {
	limit := int64(l.eng.opts.InboxBytes)
	for {
		cur := l.inboxBytes.Load()
		if cur+int64(cost) > limit {
			l.inboxDrops.Add(1)
			l.inboxDropBytes.Add(uint64(cost))
			return false
		}
		if l.inboxBytes.CompareAndSwap(cur, cur+int64(cost)) {
			return true
		}
	}
}

// enqueue appends tasks to the inbox under one lock and wakes the loop
// unless a wake-up is already on its way. Any goroutine.
func (l *Loop) enqueue(ts ...Task) bool {
	gl := l.gl.Load()
	if gl == nil {
		l.unreserve(ts)
		return false
	}
	l.mu.Lock()
	l.inbox = append(l.inbox, ts...)
	wake := !l.triggered
	l.triggered = true
	l.mu.Unlock()
	if wake {
		if err := gl.Execute(context.Background(), l); err != nil {
			// Shutting down: nothing will run the inbox.
			l.mu.Lock()
			l.triggered = false
			l.unreserve(l.inbox)
			clear(l.inbox)
			l.inbox = l.inbox[:0]
			l.mu.Unlock()
			return false
		}
	}
	return true
}

func (l *Loop) unreserve(ts []Task) {
	cost := 0
	for i := range ts {
		cost += ts[i].cost
	}
	if cost != 0 {
		l.inboxBytes.Add(-int64(cost))
	}
}

// Handoff is Post for work that loop l's own goroutine hands to loop to
// (a delivery to another loop's receivers). It is queued in l's outbox for
// to and handed over once this iteration of l ends, together with every
// other hand-off to to: one lock and at most one wake-up per target loop
// per iteration instead of one per task. Tasks to one target keep their
// order. Loop goroutine of l only; other goroutines use Post. A plain Post
// from l's goroutine to to may overtake hand-offs still in the outbox.
func (l *Loop) Handoff(to *Loop, t Task) bool {
	t.cost = 0
	return l.handoff(to, t, false)
}

// HandoffBytes is Handoff charged against to's inbox budget like
// PostBytes: the charge is taken at once, so a refusal (false, counted in
// to's InboxDrops) is known to the caller here, and what l already queued
// for to is handed over first, so whatever the caller posts about the drop
// comes after the hand-offs made before it. Loop goroutine of l only.
func (l *Loop) HandoffBytes(to *Loop, t Task, size int) bool {
	t.cost = max(size, 1)
	return l.handoff(to, t, true)
}

func (l *Loop) handoff(to *Loop, t Task, bounded bool) bool {
	if to.gl.Load() == nil {
		return false
	}
	if bounded && !to.reserve(t.cost) {
		l.handOver(int(to.index))
		return false
	}
	if l.outbox == nil {
		n := len(l.eng.loops)
		l.outbox = make([][]Task, n)
		l.outPending = make([]bool, n)
	}
	i := to.index
	if !l.outPending[i] {
		l.outPending[i] = true
		l.outTargets = append(l.outTargets, int32(i))
	}
	l.outbox[i] = append(l.outbox[i], t)
	if !l.flushPosted {
		l.scheduleFlush()
	}
	return true
}

// handOver moves the outbox for loop i into that loop's inbox.
func (l *Loop) handOver(i int) {
	if l.outbox == nil || len(l.outbox[i]) == 0 {
		return
	}
	q := l.outbox[i]
	l.handovers++
	l.eng.loops[i].enqueue(q...) // a stopping loop drops them: its connections are going
	clear(q)
	l.outbox[i] = q[:0]
}

// handOverAll hands every outbox over, targets in first-use order.
func (l *Loop) handOverAll() {
	for _, i := range l.outTargets {
		l.outPending[i] = false
		l.handOver(int(i))
	}
	l.outTargets = l.outTargets[:0]
}

// runBudget is how many tasks Run runs before it lets gnet's event loop
// turn (reads, writes of what gnet holds, other connections): it then
// flushes what the tasks wrote and schedules itself again. A burst of
// deliveries thus leaves while it is produced, and a receiver that reads is
// not mistaken for a slow one.
const runBudget = 256

// Run drains the inbox on the loop; it is the gnet.Runnable that Post
// schedules. It runs at most runBudget tasks per call and re-schedules
// itself when more are waiting.
func (l *Loop) Run(ctx context.Context) error {
	budget := runBudget
	if len(l.outTargets) > 0 {
		l.handOverAll()
	}
	for budget > 0 {
		if l.runPos == len(l.running) {
			l.mu.Lock()
			l.spare = l.running[:0]
			l.running = l.inbox
			l.inbox = l.spare
			l.runPos = 0
			if len(l.running) == 0 {
				l.triggered = false
				l.mu.Unlock()
				l.settle()
				return nil
			}
			l.mu.Unlock()
		}
		cost := 0
		for l.runPos < len(l.running) && budget > 0 {
			t := &l.running[l.runPos]
			l.runPos++
			budget--
			t.Fn(l, t.Arg)
			cost += t.cost
			*t = Task{}
			if len(l.full) > 0 {
				l.flushFull()
			}
			// A task's hand-offs leave before the next task runs: a task
			// may also Post to other loops directly (a settle fence), and
			// those must not overtake what this loop routed before.
			if len(l.outTargets) > 0 {
				l.handOverAll()
			}
		}
		if cost > 0 {
			l.inboxBytes.Add(-int64(cost))
		}
	}
	// Out of budget with work left: write what the tasks produced and come
	// back after gnet's next poll. triggered stays set, so Posts meanwhile
	// do not wake the loop again.
	l.settle()
	if gl := l.gl.Load(); gl == nil || gl.Execute(ctx, l) != nil {
		l.mu.Lock()
		l.triggered = false // shutting down: nothing will run the rest
		l.mu.Unlock()
	}
	return nil
}

// settle writes every cork, then lets backlogged connections move on (their
// held frames, 4009 closes, OnDrain) and writes what that produced.
func (l *Loop) settle() {
	if len(l.outTargets) > 0 {
		l.handOverAll()
	}
	l.flushDirty()
	l.checkBacklog()
	l.flushDirty()
	if len(l.backlog) > 0 && !l.backlogPollArmed {
		l.armBacklogPoll()
	}
}

// backlogPollInterval is how soon a loop that has backlogged connections
// and nothing else to do looks at them again. gnet writes what it holds on
// the socket's write events and has no callback for it, so an otherwise
// quiet loop would notice a drained receiver only at the next tick
// (TickInterval, 100 ms), holding its messages that long.
const backlogPollInterval = 2 * time.Millisecond

// armBacklogPoll makes the loop run (and so settle: checkBacklog) again
// after backlogPollInterval. Loop goroutine.
func (l *Loop) armBacklogPoll() {
	l.backlogPollArmed = true
	if l.backlogPoll == nil {
		l.backlogPoll = time.AfterFunc(backlogPollInterval, func() {
			l.Post(Task{Fn: backlogPollTask}) // false only when the loop stopped
		})
		return
	}
	l.backlogPoll.Reset(backlogPollInterval)
}

// backlogPollTask only lets the loop settle: Run's settle re-checks the
// backlog and re-arms the poll while connections remain on it.
func backlogPollTask(l *Loop, _ any) { l.backlogPollArmed = false }

// flushFull writes the connections whose cork passed flushAt. They
// stay on the dirty list; its flush finds their cork empty or small.
func (l *Loop) flushFull() {
	for i, c := range l.full {
		l.full[i] = nil
		if c.flags&flagFull != 0 {
			c.flags &^= flagFull
			c.flush()
		}
	}
	l.full = l.full[:0]
}

// scheduleFlush makes sure the loop settles after its current iteration:
// corked bytes of other connections leave, coalescing every frame queued
// meanwhile into one write per connection; the outboxes are handed over;
// and backlogged connections are looked at again (drain detection every
// iteration, not only on the tick).
func (l *Loop) scheduleFlush() {
	if l.dirty == nil && len(l.outTargets) == 0 && len(l.backlog) == 0 || l.flushPosted {
		return
	}
	l.flushPosted = true
	if !l.Post(Task{Fn: flushTask}) {
		l.flushPosted = false
		l.handOverAll()
		l.flushDirty()
	}
}

func flushTask(l *Loop, _ any) { l.flushPosted = false }

// flushDirty writes every corked connection once. A flush may put its own
// connection back on the list (a 4009 close frame queued by the flush
// itself), so the list is taken apart one head at a time, never saved and
// restored around a flush.
func (l *Loop) flushDirty() {
	for l.dirty != nil {
		c := l.dirty
		l.dirty = c.dirtyNext
		c.dirtyNext = nil
		c.flags &^= flagDirty | flagFull
		c.flush()
	}
	if len(l.full) > 0 {
		clear(l.full)
		l.full = l.full[:0]
	}
}

// tick advances the timing wheel, re-checks backlogged connections and
// publishes the loop's counters.
func tickTask(l *Loop, _ any) {
	l.wheel.advance(l.eng.tickNow(), (*Conn).onDeadline)
	l.checkBacklog()
	l.publishStats()
	if th, ok := l.eng.handler.(TickHandler); ok {
		th.OnTick(l)
	}
}

// publishStats copies the counters where Engine.Stats can read them without
// waiting for the loop.
func (l *Loop) publishStats() {
	l.pubMu.Lock()
	l.pub = l.stats
	l.pubMu.Unlock()
}

// published returns the counters of the loop's last tick. Any goroutine.
func (l *Loop) published() LoopStats {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	return l.pub
}

// checkBacklog looks at every backlogged connection: frames held back in
// its cork go to gnet as gnet's buffer drains below the low-water mark; a
// connection closed with 4009 is closed once gnet has written its close
// frame; below the low-water mark, the handler hears OnDrain.
func (l *Loop) checkBacklog() {
	if len(l.backlog) == 0 {
		return
	}
	low := l.eng.opts.WriteLowWater
	// Iterate over a copy: a flush may close a connection synchronously,
	// and the handler's OnClose or OnDrain may write and backlog others.
	l.scratch = append(l.scratch[:0], l.backlog...)
	clear(l.backlog)
	l.backlog = l.backlog[:0]
	for _, c := range l.scratch {
		c.flags &^= flagBacklogged
		if c.state == StateClosed {
			continue
		}
		if c.cork != nil && c.gc.OutboundBuffered() <= low {
			c.flush() // may backlog c again
			if c.state == StateClosed || c.flags&flagBacklogged != 0 {
				continue
			}
		}
		switch {
		case c.flags&flagDrainClose != 0:
			if c.cork == nil && c.gc.OutboundBuffered() == 0 {
				c.finishClose()
			} else {
				c.backlog()
			}
		case c.Queued() <= low:
			l.eng.handler.OnDrain(c)
		default:
			c.backlog()
		}
	}
	clear(l.scratch)
	l.scratch = l.scratch[:0]
}

func (l *Loop) addConn(c *Conn) {
	c.index = int32(len(l.conns))
	l.conns = append(l.conns, c)
}

func (l *Loop) removeConn(c *Conn) {
	i := int(c.index)
	if i < 0 || i >= len(l.conns) || l.conns[i] != c {
		return
	}
	last := len(l.conns) - 1
	l.conns[i] = l.conns[last]
	l.conns[i].index = int32(i)
	l.conns[last] = nil
	l.conns = l.conns[:last]
	c.index = -1
}
