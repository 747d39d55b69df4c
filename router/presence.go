package router

// Presence across instances (PROTOCOL.md sections 3, 11 and 12).
//
// # Who owns what
//
//	engine loops ──────▶ registry (user -> local connections per room, as
//	                     before), then presenceService.touch: marks the
//	                     (room, user) dirty in a set under presenceService.mu
//	                     and kicks the service; never waits
//	backplane goroutine ▶ presenceService.deliver: a message from another
//	                     instance into the service's inbox (bounded in
//	                     bytes; past it dropped, counted, and the room is
//	                     asked again)
//	presence goroutine ─▶ owns the tracker (tracker.go): re-reads the
//	                     registry for each dirty pair, sends deltas and
//	                     state transfers through the PresenceTransport,
//	                     applies the other instances' messages, drops lost
//	                     instances, answers queries, and routes user:joined /
//	                     user:left to the local members (Router.route, which
//	                     only posts to loops)
//
// Marking is level-triggered like backplane interest: the service reads
// the registry's count when it gets to the pair, so a join and a leave
// racing on two loops cannot leave it wrong. The dirty set is bounded
// (maxPresenceDirty pairs): past it the marks are dropped, counted, and the
// service re-reads every room of the registry instead.
//
// A client's `presence` is a query handed to the service (bounded by the
// same inbox budget), which answers by posting to the connection's loop at
// once: no collection window. For a room this instance does not track (no
// local members), the service asks the room's instances once
// (PresenceQuery) and answers with the first reply, or with an empty list
// when none tracks the room. Standalone (no backplane, or one without
// PresenceTransport) there is no service: the loop answers from the
// registry and sends the events itself, as a single instance always did.

import (
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Defaults and bounds of presence.
const (
	// DefaultPresenceMaxUsers caps the users in one presence answer.
	DefaultPresenceMaxUsers = 1000
	// MaxPresenceMaxUsers is the largest cap: 5000 names of up to 128
	// bytes stay under NATS's default 1 MiB max payload.
	MaxPresenceMaxUsers = 5000
	// DefaultPresenceQueueBytes bounds the presence service's inbox.
	DefaultPresenceQueueBytes = 16 << 20
	// maxPresenceDirty bounds the dirty set (pairs) before a full re-read.
	maxPresenceDirty = 1 << 16
	// State transfer chunks: at most this many entries and name bytes.
	presenceChunkEntries = 2048
	presenceChunkBytes   = 128 << 10
)

// PresenceTransport is the optional Backplane ability behind replicated
// presence, found by a type assertion on Options.Backplane. All methods
// but ServeTracker are called from the presence goroutine only.
type PresenceTransport interface {
	// ServeTracker sets where messages from other instances go; called
	// once, before Start. in must not block (it enqueues).
	ServeTracker(in func(*PresenceMsg))
	// TrackRoom starts (on) or stops receiving the room's presence
	// messages. Messages sent after it returns reach this instance.
	TrackRoom(room string, on bool) error
	// SendPresence sends m to every other instance tracking m.Room, or
	// only to the address to (a received message's ReplyTo) when given.
	// A PresenceState with Ask and a PresenceQuery want answers: they come
	// back through in, with ReplyTo set on the question at the receivers;
	// when nobody can answer, the transport may say so with PresenceNone.
	SendPresence(m *PresenceMsg, to string) error
	// PeerAlive reports whether instance id was heard within the instance
	// timeout (heartbeats).
	PeerAlive(id string) bool
	// PresenceTiming is the heartbeat interval and the instance timeout.
	PresenceTiming() (heartbeat, timeout time.Duration)
	// PresenceEpoch changes whenever this instance's connection to the
	// others was replaced (messages may have been lost): every tracked
	// room is then transferred again.
	PresenceEpoch() uint64
}

// PresenceStats are the presence service's counters.
type PresenceStats struct {
	Rooms, Pairs            int    // tracked rooms, (room, user) pairs
	Sent, Received, Dropped uint64 // messages to and from other instances; inbox drops
	DirtyOverflows          uint64 // dirty-set overflows (full re-reads)
	Resyncs, InstancesLost  uint64 // state transfers asked for gaps or returns; instances dropped
	Queries, QueryFailures  uint64 // queries of untracked rooms, and those unanswered
	SendErrors, AskRejected uint64 // transport send errors; asks refused by a full inbox
}

// roomUser is a key of the dirty set.
type roomUser struct{ room, user string }

type presenceInput struct {
	msg  *PresenceMsg
	ask  *presenceAsk
	cost int64
}

// presenceAsk is a question to the service; reply runs on its goroutine
// and must not block.
type presenceAsk struct {
	room  string
	limit int
	reply func(a presenceAnswer)
}

// presenceAnswer is the service's answer to a presenceAsk.
type presenceAnswer struct {
	users       []string
	truncated   bool
	nUsers      int
	connections int
	err         error
}

// pendingQuery is a query of an untracked room waiting for its answer.
type pendingQuery struct {
	ask      *presenceAsk
	msg      *PresenceMsg // the query, sent again while unanswered
	sentAt   int64
	deadline int64
	sawNone  bool // an instance answered that it does not track the room
}

// presenceService runs the tracker; see the top of this file.
type presenceService struct {
	r        *Router
	tp       PresenceTransport
	tr       *tracker
	maxUsers int
	grace    time.Duration
	timeout  time.Duration
	tick     time.Duration

	mu       sync.Mutex // guards dirty and overflow
	dirty    map[roomUser]uint64
	overflow bool
	kick     chan struct{}

	in       chan presenceInput
	inBytes  atomic.Int64
	maxBytes int64
	resyncMu sync.Mutex // guards resyncRooms
	resyncs  map[string]bool

	// Presence goroutine only.
	queries map[uint64]*pendingQuery
	nextQ   uint64
	lost    map[string]int64 // instances dropped as lost, when
	vacated map[string]bool  // untracked rooms whose last delta did not go out
	epoch   uint64

	rooms, pairs                                       atomic.Int64
	sent, received, dropped, overflows, resyncCount    atomic.Uint64
	instLost, queryCount, queryFail, sendErr, rejected atomic.Uint64

	started bool // run was started (Bind)
	stop    sync.Once
	done    chan struct{}
	wg      sync.WaitGroup
}

// bindPresence starts the presence service when the backplane can carry
// it (before the backplane's Start).
func (r *Router) bindPresence() {
	tp, ok := r.opts.Backplane.(PresenceTransport)
	if !ok {
		return
	}
	hb, timeout := tp.PresenceTiming()
	grace := r.opts.PresenceGrace
	if grace == 0 {
		grace = hb
	}
	if grace < 0 {
		grace = 0
	}
	ps := &presenceService{
		r: r, tp: tp, maxUsers: r.opts.PresenceMaxUsers, grace: grace, timeout: timeout,
		tick:  max(min(hb/4, 100*time.Millisecond), 5*time.Millisecond),
		tr:    newTracker(r.opts.InstanceID, uint64(time.Now().UnixNano()), int64(grace)),
		dirty: map[roomUser]uint64{}, kick: make(chan struct{}, 1),
		in: make(chan presenceInput, 1<<16), maxBytes: int64(r.opts.PresenceQueueBytes),
		resyncs: map[string]bool{}, queries: map[uint64]*pendingQuery{}, lost: map[string]int64{}, vacated: map[string]bool{},
		done: make(chan struct{}),
	}
	tp.ServeTracker(ps.deliver)
	r.pres = ps
}

// startPresence starts the presence goroutine (after the backplane's Start).
func (r *Router) startPresence() {
	if r.pres != nil {
		r.pres.started = true
		r.pres.wg.Add(1)
		go r.pres.run()
	}
}

// closePresence sends the pending leaves and stops the presence goroutine
// (before the backplane closes).
func (r *Router) closePresence() {
	if r.pres != nil && r.pres.started {
		r.pres.stop.Do(func() { close(r.pres.done) })
		r.pres.wg.Wait()
	}
}

// PresenceStats returns the presence service's counters (zero standalone).
func (r *Router) PresenceStats() PresenceStats {
	ps := r.pres
	if ps == nil {
		return PresenceStats{}
	}
	return PresenceStats{Rooms: int(ps.rooms.Load()), Pairs: int(ps.pairs.Load()),
		Sent: ps.sent.Load(), Received: ps.received.Load(), Dropped: ps.dropped.Load(),
		DirtyOverflows: ps.overflows.Load(), Resyncs: ps.resyncCount.Load(), InstancesLost: ps.instLost.Load(),
		Queries: ps.queryCount.Load(), QueryFailures: ps.queryFail.Load(), SendErrors: ps.sendErr.Load(),
		AskRejected: ps.rejected.Load()}
}

// touch says user's connections in room may have changed here (any
// goroutine; event loops call it after updating the registry). exclude is
// a connection that just joined, 0 for a leave.
func (ps *presenceService) touch(room, user string, exclude uint64) {
	ps.mu.Lock()
	k := roomUser{room, user}
	if _, had := ps.dirty[k]; had || len(ps.dirty) < maxPresenceDirty {
		if exclude != 0 || !had {
			ps.dirty[k] = exclude
		}
	} else {
		ps.overflow = true
	}
	ps.mu.Unlock()
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// deliver takes a message from another instance (transport goroutines).
func (ps *presenceService) deliver(m *PresenceMsg) {
	cost := int64(96 + len(m.Room) + len(m.From) + len(m.ReplyTo))
	for _, e := range m.Entries {
		cost += int64(len(e.User) + 32)
	}
	if !ps.enqueue(presenceInput{msg: m, cost: cost}) {
		ps.dropped.Add(1)
		ps.resyncMu.Lock()
		ps.resyncs[m.Room] = true // lost one of its messages: ask again
		ps.resyncMu.Unlock()
	}
}

// ask hands a question to the service; false when its inbox is full.
func (ps *presenceService) ask(a *presenceAsk) bool {
	if !ps.enqueue(presenceInput{ask: a, cost: int64(64 + len(a.room))}) {
		ps.rejected.Add(1)
		return false
	}
	return true
}

func (ps *presenceService) enqueue(in presenceInput) bool {
	if ps.inBytes.Add(in.cost) > ps.maxBytes {
		ps.inBytes.Add(-in.cost)
		return false
	}
	select {
	case ps.in <- in:
		return true
	default:
		ps.inBytes.Add(-in.cost)
		return false
	}
}

func (ps *presenceService) run() {
	defer ps.wg.Done()
	t := time.NewTicker(ps.tick)
	defer t.Stop()
	ps.epoch = ps.tp.PresenceEpoch()
	ps.hello()
	for {
		select {
		case <-ps.done:
			// Closing (after the engine stopped): the connections' leaves
			// go out now, so the others need not wait for the timeout.
			ps.applyDirty()
			return
		case <-ps.kick:
			ps.applyDirty()
		case in := <-ps.in:
			ps.inBytes.Add(-in.cost)
			if in.msg != nil {
				ps.received.Add(1)
				ps.handle(in.msg)
			} else {
				ps.answer(in.ask)
			}
		case <-t.C:
			ps.periodic()
		}
		ps.publishChanges()
	}
}

func now() int64 { return time.Now().UnixNano() }

// applyDirty re-reads the registry for every dirty pair (or every room,
// after an overflow).
func (ps *presenceService) applyDirty() {
	ps.mu.Lock()
	batch, overflow := ps.dirty, ps.overflow
	ps.dirty, ps.overflow = make(map[roomUser]uint64, min(len(batch), 1024)), false
	ps.mu.Unlock()
	if overflow {
		ps.overflows.Add(1)
		rooms, _ := ps.r.reg.tables[KindRoom].snapshot()
		for _, room := range rooms {
			for user := range ps.r.reg.roomUserConns(room) {
				if _, ok := batch[roomUser{room, user}]; !ok {
					batch[roomUser{room, user}] = 0
				}
			}
		}
		for _, room := range ps.tr.trackedRooms() {
			for _, user := range ps.tr.localUsers(room) {
				if _, ok := batch[roomUser{room, user}]; !ok {
					batch[roomUser{room, user}] = 0
				}
			}
		}
	}
	t := now()
	for k, exclude := range batch {
		n := ps.r.reg.roomUserCount(k.room, k.user)
		delta, started, ended := ps.tr.setLocal(k.room, k.user, n, exclude, t)
		if started {
			if err := ps.tp.TrackRoom(k.room, true); err != nil {
				ps.sendErr.Add(1)
			}
			ps.transfer(k.room, true) // includes this delta
			continue
		}
		if delta != nil && !ps.send(delta, "") && ended && len(ps.vacated) < maxPresenceDirty {
			ps.vacated[k.room] = true // tell the others again that we left it
		}
		if ended {
			if err := ps.tp.TrackRoom(k.room, false); err != nil {
				ps.sendErr.Add(1)
			}
		}
	}
}

// transfer sends this instance's state of room and asks the others for
// theirs; initial: the answers tell what was there, no events, and the
// room's events wait for them (at most the instance timeout).
func (ps *presenceService) transfer(room string, initial bool) {
	ps.nextQ++
	q := ps.nextQ
	if initial {
		ps.tr.beginInitial(room, q, now()+int64(ps.timeout))
	} else {
		ps.tr.beginConfirm(room, q, now()+int64(ps.timeout))
	}
	for _, m := range ps.tr.ownState(room, true, q, presenceChunkEntries, presenceChunkBytes) {
		ps.send(m, "")
	}
}

// hello announces this instance's incarnation to every instance.
func (ps *presenceService) hello() {
	ps.send(&PresenceMsg{Type: PresenceHello, From: ps.r.opts.InstanceID, Inc: ps.tr.inc}, "")
}

// send sends m; a message about a tracked room that could not go out
// (NATS down) makes the room's state go out again on a later tick.
func (ps *presenceService) send(m *PresenceMsg, to string) bool {
	if err := ps.tp.SendPresence(m, to); err != nil {
		ps.sendErr.Add(1)
		if m.Type == PresenceDelta || m.Type == PresenceState {
			ps.resyncMu.Lock()
			ps.resyncs[m.Room] = true
			ps.resyncMu.Unlock()
		}
		return false
	}
	ps.sent.Add(1)
	return true
}

// resendVacated tells the others again that this instance holds nothing
// in the rooms whose last delta could not go out (an empty state under a
// fresh epoch replaces what they keep of ours): without it, a peer that
// never lost our heartbeat would keep our last users there.
func (ps *presenceService) resendVacated() {
	for room := range ps.vacated {
		if ps.tr.tracked(room) {
			delete(ps.vacated, room) // tracked again: its transfers cover it
			continue
		}
		ps.tr.epochs++
		m := &PresenceMsg{Type: PresenceState, Room: room, From: ps.r.opts.InstanceID, Inc: ps.tr.inc, Epoch: ps.tr.epochs, Last: true}
		if err := ps.tp.SendPresence(m, ""); err != nil {
			ps.sendErr.Add(1)
			return // still down: next tick
		}
		ps.sent.Add(1)
		delete(ps.vacated, room)
	}
}

// handle applies one message from another instance.
func (ps *presenceService) handle(m *PresenceMsg) {
	t := now()
	switch m.Type {
	case PresenceHello:
		ps.tr.applyHello(m, t)
	case PresenceDelta:
		ps.tr.applyDelta(m, t)
	case PresenceState:
		ps.tr.applyState(m, t)
		if m.Last && m.Ask && m.ReplyTo != "" && ps.tr.tracked(m.Room) {
			for _, a := range ps.tr.ownState(m.Room, false, m.Query, presenceChunkEntries, presenceChunkBytes) {
				ps.send(a, m.ReplyTo)
			}
		}
	case PresenceQuery:
		switch {
		case m.ReplyTo == "":
		case ps.tr.tracked(m.Room):
			ps.send(ps.tr.view(m), m.ReplyTo)
		default:
			// Still subscribed, no longer tracking (its last member just
			// left): say so, so the asker need not wait for this one.
			ps.send(&PresenceMsg{Type: PresenceNone, Room: m.Room, From: ps.r.opts.InstanceID, Query: m.Query}, m.ReplyTo)
		}
	case PresenceView, PresenceNone:
		if m.Type == PresenceNone && m.From == "" {
			ps.tr.noAnswer(m.Query, t) // an initial ask nobody else can answer
		}
		q := ps.queries[m.Query]
		if q == nil {
			return
		}
		if m.Type == PresenceNone && m.From != "" {
			q.sawNone = true // an instance not tracking it: wait for others
			return
		}
		delete(ps.queries, m.Query)
		a := presenceAnswer{users: []string{}}
		if m.Type == PresenceView {
			a = viewAnswer(m)
		}
		q.ask.reply(a)
	}
}

// answer answers a question: from the tracker, or by asking the room's
// instances when it is not tracked here.
func (ps *presenceService) answer(a *presenceAsk) {
	if ps.tr.tracked(a.room) {
		var ans presenceAnswer
		ans.users, ans.truncated = ps.tr.users(a.room, a.limit)
		ans.nUsers, ans.connections = ps.tr.stats(a.room)
		a.reply(ans)
		return
	}
	ps.queryCount.Add(1)
	ps.nextQ++
	q := ps.nextQ
	m := &PresenceMsg{Type: PresenceQuery, Room: a.room, From: ps.r.opts.InstanceID, Inc: ps.tr.inc, Query: q, Limit: a.limit}
	t := now()
	ps.queries[q] = &pendingQuery{ask: a, msg: m, sentAt: t, deadline: t + int64(ps.timeout)}
	if err := ps.tp.SendPresence(m, ""); err != nil {
		delete(ps.queries, q)
		ps.sendErr.Add(1)
		ps.queryFail.Add(1)
		a.reply(presenceAnswer{err: ErrUnavailable})
		return
	}
	ps.sent.Add(1)
}

// periodic runs on the tick: due user:left events, lost and returning
// instances, resyncs, query deadlines.
func (ps *presenceService) periodic() {
	t := now()
	ps.tr.expire(t)
	ps.tr.endConfirms(t)
	ps.tr.endInitials(t)
	for _, id := range ps.tr.silentPeers(t-int64(ps.timeout), ps.tp.PeerAlive) {
		ps.tr.dropInstance(id, t, false)
		ps.lost[id] = t
		ps.instLost.Add(1)
	}
	resyncAll := false
	for id, at := range ps.lost {
		if ps.tp.PeerAlive(id) {
			resyncAll = true // heard again after being dropped: a partition healed
			delete(ps.lost, id)
		} else if t-at > 10*int64(ps.timeout) {
			delete(ps.lost, id)
		}
	}
	if e := ps.tp.PresenceEpoch(); e != ps.epoch {
		ps.epoch = e
		resyncAll = true // our connection was replaced: messages may be lost
		ps.hello()
	}
	ps.resyncMu.Lock()
	rooms := ps.resyncs
	ps.resyncs = map[string]bool{}
	ps.resyncMu.Unlock()
	for room := range ps.tr.resync {
		rooms[room] = true
	}
	clear(ps.tr.resync)
	if resyncAll {
		for _, room := range ps.tr.trackedRooms() {
			rooms[room] = true
		}
	}
	for room := range rooms {
		if ps.tr.tracked(room) {
			ps.resyncCount.Add(1)
			ps.transfer(room, false)
		}
	}
	ps.resendVacated()
	for q, p := range ps.queries {
		if t <= p.deadline {
			// Unanswered: ask again. An instance that was just
			// unsubscribing may have swallowed it (the server still
			// counted it, so NATS said no "no responders"). Answers to
			// either copy share the token; the first one wins.
			if !p.sawNone && t-p.sentAt >= int64(2*ps.tick) && ps.tp.SendPresence(p.msg, "") == nil {
				p.sentAt = t
				ps.sent.Add(1)
			}
			continue
		}
		delete(ps.queries, q)
		if p.sawNone { // only instances that do not track it answered
			p.ask.reply(presenceAnswer{users: []string{}})
			continue
		}
		ps.queryFail.Add(1)
		p.ask.reply(presenceAnswer{err: ErrUnavailable})
	}
	r, p := ps.tr.size()
	ps.rooms.Store(int64(r))
	ps.pairs.Store(int64(p))
}

// publishChanges routes the tracker's user:joined / user:left to the
// local members (when -presence-events is on).
func (ps *presenceService) publishChanges() {
	changes := ps.tr.takeChanges()
	if !ps.r.opts.PresenceEvents {
		return
	}
	for _, c := range changes {
		m := newOutMsg()
		m.kind = KindRoom
		m.name = append(m.name, c.room...)
		m.from = append(m.from, c.user...)
		m.excludeID = c.exclude
		m.presence = wire.EventUserLeft
		if c.joined {
			m.presence = wire.EventUserJoined
		}
		ps.r.route(nil, m)
	}
}

func viewAnswer(m *PresenceMsg) presenceAnswer {
	a := presenceAnswer{users: make([]string, len(m.Entries)), truncated: m.Truncated, nUsers: m.Users, connections: m.Conns}
	for i, e := range m.Entries {
		a.users[i] = e.User
	}
	sort.Strings(a.users)
	return a
}

// askPresence answers a client's `presence` (on cl's loop): the service
// answers by posting to the loop.
func (r *Router) askPresence(cl *client, e *wire.Envelope) {
	a := &presenceReply{cl: cl, room: append([]byte(nil), e.Room...)}
	if len(e.ID) > 0 {
		a.id = append([]byte(nil), e.ID...)
	}
	if !r.Ready() {
		cl.shard.stats.BackplaneErrors++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "presence unavailable"}, a.id)
		return
	}
	loop := cl.shard.loop
	ok := r.pres.ask(&presenceAsk{room: string(a.room), limit: r.opts.PresenceMaxUsers, reply: func(ans presenceAnswer) {
		a.ans = ans
		loop.Post(engine.Task{Fn: presenceTask, Arg: a})
	}})
	if !ok {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "presence overloaded"}, a.id)
	}
}

type presenceReply struct {
	cl   *client
	room []byte
	id   []byte
	ans  presenceAnswer
}

func presenceTask(_ *engine.Loop, arg any) {
	a := arg.(*presenceReply)
	cl := a.cl
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	s := cl.shard
	if a.ans.err != nil {
		s.stats.BackplaneErrors++
		s.r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "presence unavailable"}, a.id)
		return
	}
	s.out = cl.codec.AppendPresencePage(s.out[:0], a.room, a.ans.users, a.ans.truncated, a.id)
	s.write(cl, s.out)
}

// localPresence answers `presence` standalone, from the registry.
func (r *Router) localPresence(cl *client, e *wire.Envelope) {
	s := cl.shard
	users := r.reg.roomUsers(e.Room)
	truncated := len(users) > r.opts.PresenceMaxUsers
	if truncated {
		users = users[:r.opts.PresenceMaxUsers]
	}
	s.out = cl.codec.AppendPresencePage(s.out[:0], e.Room, users, truncated, e.ID)
	s.write(cl, s.out)
}

// presenceControl answers the control API's presence and presence_stats
// from the service (waits briefly; off any loop).
func (r *Router) presenceControl(op, room string) (presenceAnswer, error) {
	if r.pres == nil {
		users := r.reg.roomUsers([]byte(room))
		a := presenceAnswer{nUsers: len(users), connections: r.reg.count(KindRoom, []byte(room))}
		a.users, a.truncated = users, len(users) > r.opts.PresenceMaxUsers
		if a.truncated {
			a.users = users[:r.opts.PresenceMaxUsers]
		}
		return a, nil
	}
	done := make(chan presenceAnswer, 1)
	limit := r.opts.PresenceMaxUsers
	if op == CtlPresenceStats {
		limit = 1 // the totals are what counts
	}
	if !r.pres.ask(&presenceAsk{room: room, limit: limit, reply: func(a presenceAnswer) { done <- a }}) {
		return presenceAnswer{}, errControlUnavailable
	}
	t := time.NewTimer(r.pres.timeout + DefaultControlTimeout) // past the query's own deadline
	defer t.Stop()
	select {
	case a := <-done:
		if a.err != nil {
			return a, errControlUnavailable
		}
		return a, nil
	case <-t.C:
		return presenceAnswer{}, &ControlError{Status: 503, Outcome: CtlUnavailable, Message: "presence did not answer in time"}
	}
}

// roomUserCount is user's local connections in room (any goroutine).
func (r *registry) roomUserCount(room, user string) int {
	in := r.lookup(KindRoom, []byte(room))
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead {
		return 0
	}
	return in.users[user]
}

// roomUserConns copies room's user -> local connections (any goroutine).
func (r *registry) roomUserConns(room string) map[string]int {
	in := r.lookup(KindRoom, []byte(room))
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]int, len(in.users))
	for u, n := range in.users {
		out[u] = n
	}
	return out
}

// MergeUsers returns the sorted union of user lists, each user once.
func MergeUsers(lists ...[]string) []string {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	out := make([]string, 0, n)
	for _, l := range lists {
		out = append(out, l...)
	}
	sort.Strings(out)
	j := 0
	for i, u := range out {
		if i > 0 && u == out[j-1] {
			continue
		}
		out[j] = u
		j++
	}
	return out[:j]
}

// controlPresence is the control API's presence and presence_stats: this
// instance's view, which spans the instances (no scatter).
func (r *Router) controlPresence(op string, req *ControlRequest) ([]byte, error) {
	a, err := r.presenceControl(op, req.Room)
	if err != nil {
		return nil, err
	}
	if op == CtlPresenceStats {
		return json.Marshal(struct {
			Users       int `json:"users"`
			Connections int `json:"connections"`
		}{a.nUsers, a.connections})
	}
	if a.users == nil {
		a.users = []string{}
	}
	return json.Marshal(struct {
		Users     []string `json:"users"`
		Truncated bool     `json:"truncated,omitempty"`
	}{a.users, a.truncated})
}
