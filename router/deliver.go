package router

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/frame"
	"github.com/wsgate/wsgate/wire"
)

// outMsg is one message on its way to local receivers: addressed, stamped,
// with its data in the codec it arrived in. It is encoded at most once per
// codec (lazily, by whichever loop needs that codec first) and the same
// frame goes to every receiver of that codec. Shared by the loops it is
// posted to; reference-counted and pooled.
type outMsg struct {
	refs      atomic.Int32
	kind      Kind
	priority  wire.Priority
	filter    wire.Filter
	exclude   *engine.Conn // the sender's own connection, skipped
	dataCodec wire.Codec
	presence  string // "user:joined" / "user:left": a presence event, not a message

	// Backing storage for the byte fields, reused through the pool.
	name, from, data, id []byte
	ts                   int64
	born                 int64 // monoNow when the gateway took it in, for the latency histogram
	seq                  uint64
	hasSeq               bool
	excludeID            uint64 // history mode: the sender's connection by id (its message came back through the stream)
	replay               bool   // a resume replay, never held back for one (history.go)

	once   [wire.NumCodecs]sync.Once
	frames [wire.NumCodecs]*frame.Shared
	errs   [wire.NumCodecs]error
}

var outPool = sync.Pool{New: func() any { return new(outMsg) }}

func newOutMsg() *outMsg {
	m := outPool.Get().(*outMsg)
	m.refs.Store(1)
	m.born = monoNow()
	return m
}

func (m *outMsg) retain() { m.refs.Add(1) }

func (m *outMsg) release() {
	if m.refs.Add(-1) != 0 {
		return
	}
	for i := range m.frames {
		if m.frames[i] != nil {
			m.frames[i].Release()
		}
	}
	*m = outMsg{name: m.name[:0], from: m.from[:0], data: m.data[:0], id: m.id[:0]}
	outPool.Put(m)
}

// frameFor returns the message encoded for codec c, encoding it on first use.
func (m *outMsg) frameFor(c wire.Codec) (*frame.Shared, error) {
	m.once[c].Do(func() {
		buf := getBuf()
		defer putBuf(buf)
		op := ws.OpText
		if c.Binary() {
			op = ws.OpBinary
		}
		if m.presence != "" {
			buf.out = c.AppendUserEvent(buf.out[:0], m.presence, m.name, string(m.from))
			m.frames[c] = frame.NewShared(op, buf.out)
			return
		}
		data := m.data
		if c != m.dataCodec {
			var err error
			buf.tmp, err = wire.Transcode(buf.tmp[:0], m.data, m.dataCodec, c)
			if err != nil {
				m.errs[c] = err
				return
			}
			data = buf.tmp
		}
		d := wire.Delivery{Target: targetOf(m.kind), Name: m.name, From: m.from, Data: data, ID: m.id, TS: m.ts, Seq: m.seq, HasSeq: m.hasSeq}
		if m.kind == KindAll {
			d.Name = nil
		}
		buf.out = c.AppendDelivery(buf.out[:0], &d)
		m.frames[c] = frame.NewShared(op, buf.out)
	})
	return m.frames[c], m.errs[c]
}

func targetOf(k Kind) wire.Target {
	switch k {
	case KindChannel:
		return wire.TargetChannel
	case KindUser:
		return wire.TargetUser
	}
	return wire.TargetRoom
}

// encBuf is scratch for one encoding; pooled because encodings may run on
// any loop.
type encBuf struct{ tmp, out []byte }

var encPool = sync.Pool{New: func() any { return new(encBuf) }}

func getBuf() *encBuf  { return encPool.Get().(*encBuf) }
func putBuf(b *encBuf) { encPool.Put(b) }

// outMsgOverhead is what an outMsg costs beyond its byte fields (the
// struct, its frames' headers), charged against a loop's inbox budget.
const outMsgOverhead = 256

// inboxCost is what handing m to another loop charges against that loop's
// inbox byte budget (engine.Loop.PostBytes).
func (m *outMsg) inboxCost() int {
	return len(m.data) + len(m.name) + len(m.from) + len(m.id) + outMsgOverhead
}

// noteDropped records that n messages for (kind, name) never reached this
// loop, and makes sure the loop will tell their receivers (gapTask); refused
// says the loop's own inbox refused them (counted as InboxDropped; the
// backplane counts its own drops). Safe from any goroutine; it never waits
// on the loop. The drain task is a plain Post: at most one is in the inbox
// at a time, so it is bounded.
func (s *shard) noteDropped(kind Kind, name []byte, n uint64, refused bool) {
	g := &s.gaps
	if refused {
		g.dropped.Add(n)
	}
	g.mu.Lock()
	if kind == KindAll {
		g.all += n
	} else if k := (gapAddr{kind: kind, name: string(name)}); len(g.addrs) < maxGapAddrs {
		g.addrs[k] += n
	} else if _, ok := g.addrs[k]; ok {
		g.addrs[k] += n
	} else {
		g.all += n
	}
	post := !g.posted
	g.posted = true
	g.mu.Unlock()
	if post && !s.loop.Post(engine.Task{Fn: gapTask}) {
		g.mu.Lock()
		g.posted = false // the loop is stopping: nobody is left to tell
		g.mu.Unlock()
	}
}

// gapTask tells the members of every address in the loop's gapBook how
// many messages they missed (on the loop). It runs after the deliveries
// that were queued before the first drop it reports.
func gapTask(l *engine.Loop, _ any) {
	s, ok := l.Data().(*shard)
	if !ok {
		return
	}
	g := &s.gaps
	g.mu.Lock()
	addrs, all := g.addrs, g.all
	if g.spare == nil {
		g.spare = make(map[gapAddr]uint64)
	}
	g.addrs, g.spare, g.all, g.posted = g.spare, nil, 0, false
	g.mu.Unlock()
	for k, n := range addrs {
		if set := s.tables[k.kind][k.name]; set != nil {
			for _, cl := range set.list {
				s.sendGap(cl, targetOf(k.kind), []byte(k.name), n)
			}
		}
	}
	clear(addrs)
	g.mu.Lock()
	g.spare = addrs
	g.mu.Unlock()
	if all > 0 {
		for _, cl := range s.authed {
			s.sendGap(cl, wire.TargetRoom, nil, all)
		}
	}
}

// sendGap tells cl that n messages for name were dropped before reaching
// its loop. A backed-up connection adds them to its low-priority count
// instead, so that they are told after its held messages, in the one gap
// it gets when it drains.
func (s *shard) sendGap(cl *client, target wire.Target, name []byte, n uint64) {
	c := cl.conn
	if c.State() >= engine.StateClosing {
		return
	}
	if c.Backlogged() || len(cl.held) > 0 || cl.settling > 0 {
		cl.dropped += n
		return
	}
	s.out = cl.codec.AppendGapAt(s.out[:0], n, target, name, wire.GapOverload)
	s.write(cl, s.out)
	s.stats.GapsSent++
	s.stats.OverloadGaps++
}

// deliverTask is the Task that runs m's fan-out on one loop.
func deliverTask(l *engine.Loop, arg any) {
	m := arg.(*outMsg)
	if s, ok := l.Data().(*shard); ok {
		s.fanOut(m)
	}
	m.release()
}

// fanOut delivers m to this loop's receivers of its address.
func (s *shard) fanOut(m *outMsg) {
	s.stats.MessagesRouted++
	if m.kind == KindAll {
		for _, cl := range s.authed {
			s.deliverTo(cl, m)
		}
		return
	}
	set := s.tables[m.kind][string(m.name)]
	if set == nil {
		return
	}
	for _, cl := range set.list {
		s.deliverTo(cl, m)
	}
}

// deliverTo applies the receiver's filter and outbound flow control
// (PROTOCOL.md section 8) and queues m.
func (s *shard) deliverTo(cl *client, m *outMsg) {
	c := cl.conn
	if c == m.exclude || c.State() >= engine.StateClosing || (m.excludeID != 0 && c.ID() == m.excludeID) {
		return
	}
	if !m.filter.IsZero() && (cl.perms == nil || !m.filter.Match(cl.perms.Tags())) {
		return
	}
	if m.hasSeq && !m.replay && s.holdForResume(cl, m) {
		return // cl is resuming this room: after the replay (history.go)
	}
	f, err := m.frameFor(cl.codec)
	if err != nil {
		s.stats.Undeliverable++ // data not representable in this codec (e.g. msgpack ext to JSON)
		return
	}
	o := &s.r.eopts
	size := len(f.Bytes())
	queued := c.Queued() + cl.heldBytes
	// Backed up means the engine saw the queue pass the high-water mark
	// after a flush (it then calls OnDrain below the low-water mark), or
	// frames are still held. Bytes corked in this iteration alone do not
	// count: the kernel may take them all at the flush, the engine would
	// never report a drain, and held frames (and the gap) would be stranded.
	backedUp := c.Backlogged() || len(cl.held) > 0
	switch {
	case cl.settling > 0:
		// Its reply is not out yet (settle.go): hold whatever the priority.
	case m.priority == wire.PriorityLow && backedUp:
		cl.dropped++
		s.stats.DroppedLow++
		return
	case queued+size > o.MaxQueueBytes:
		s.stats.SlowConsumers++
		cl.releaseHeld()
		c.CloseSlowConsumer() // drops what is queued, close frame first
		return
	}
	if q := queued + size; q > s.stats.MaxQueued {
		s.stats.MaxQueued = q
	}
	if m.priority != wire.PriorityHigh && backedUp || cl.settling > 0 {
		f.Retain()
		cl.held = append(cl.held, f)
		cl.heldBytes += size
		if cl.settling == 0 {
			s.stats.Held++ // held for flow control, not for a reply to go first
		}
		return
	}
	c.WriteShared(f)
	s.stats.Deliveries++
	s.sampleLatency(m)
}

// drain writes what was held while cl was backlogged, then one gap message
// when low-priority messages were dropped meanwhile.
func (s *shard) drain(cl *client) {
	if cl.settling > 0 {
		return // its settle round releases it (settle.go)
	}
	c := cl.conn
	for i, f := range cl.held {
		c.WriteShared(f)
		f.Release()
		cl.held[i] = nil
	}
	s.stats.Deliveries += uint64(len(cl.held) - int(cl.heldReplies))
	cl.held = nil // an idle connection keeps no array from its last backlog or settle round
	cl.heldBytes = 0
	cl.heldReplies = 0
	if cl.dropped > 0 {
		s.out = cl.codec.AppendGap(s.out[:0], cl.dropped)
		s.write(cl, s.out)
		cl.dropped = 0
		s.stats.GapsSent++
	}
}

// write sends an encoded reply in cl's codec; while cl is settling it
// waits behind the frames held before it (settle.go).
func (s *shard) write(cl *client, b []byte) {
	op := ws.OpText
	if cl.codec.Binary() {
		op = ws.OpBinary
	}
	if cl.settling > 0 {
		f := frame.NewShared(op, b)
		cl.held = append(cl.held, f)
		cl.heldBytes += len(f.Bytes())
		cl.heldReplies++
		return
	}
	cl.conn.WriteMessage(op, b)
}
