package router

// The replicated presence tracker's state machine (PROTOCOL.md section 12).
// No goroutines, no I/O, no clock of its own: the presence service
// (presence.go) owns one tracker, feeds it on its goroutine and sends what
// it returns. Tested alone in tracker_test.go.
//
// For every room with local members the tracker keeps user -> the instances
// holding connections of that user in the room, with their connection
// counts. Every instance sends absolute counts ("U has n connections in R
// here"), so applying one twice is harmless; each instance numbers its
// messages per room (an epoch, fresh each time it starts tracking the room,
// and a sequence), so that a lost message shows as a gap and is repaired by
// a state transfer.
//
// A user is present while it has a holder. When its last holder goes, the
// user is absent at once (presence answers leave it out) but `user:left` is
// only due after the grace (one heartbeat interval): a join anywhere meanwhile
// cancels it, so a reconnect that lands on another instance makes no
// left/joined pair. An instance that is lost (silent past the instance
// timeout) takes its holdings with it and its users leave without grace:
// the timeout already was one.
//
// A room this instance just started tracking knows only its own
// connections until the others' answers to its initial ask arrive: a user
// joining here meanwhile would look new although it is present elsewhere.
// So while that ask is outstanding (initialAsk) the room's events are held,
// as one entry per user (its presence before, not a queue), and decided
// once the answers are in: from every instance the answers name as holding
// users in the room, or NATS's "no responders", or the instance timeout.

import (
	"slices"
	"sort"
)

// PresenceType says what a PresenceMsg carries.
type PresenceType uint8

// Presence message types.
const (
	// PresenceDelta: changed counts of the sender's own connections.
	PresenceDelta PresenceType = iota + 1
	// PresenceState: the sender's own connections in the room, all of them
	// (in chunks, the last with Last set); with Ask, the receivers answer
	// with their own state, to ReplyTo.
	PresenceState
	// PresenceQuery: an instance without members in the room asks for its
	// presence; instances tracking it answer with PresenceView.
	PresenceQuery
	// PresenceView: a tracking instance's whole view of the room (user,
	// connections on every instance), in chunks.
	PresenceView
	// PresenceNone: the transport says nobody answered a query or ask.
	PresenceNone
	// PresenceHello: an instance announces its incarnation to every
	// instance (at start and after a reconnect), so that a restart under
	// the same id replaces the old incarnation's holdings even where the
	// new one has no members.
	PresenceHello
)

// PresenceMsg is one message between presence trackers.
type PresenceMsg struct {
	Type  PresenceType
	Room  string
	From  string // sender's instance id
	Inc   uint64 // sender's incarnation: a restarted instance has a greater one
	Epoch uint64 // sender's tracking epoch of the room
	Seq   uint64 // sender's message number within the epoch
	Query uint64 // an ask's or query's token, echoed in the answers
	Ask   bool   // state: answer with your own state
	Last  bool   // state: the last chunk
	// Limit is a query's cap on the users in the answer (0: none).
	Limit int
	// Users and Conns are a view's totals; Truncated says Entries hold
	// only Limit of the Users.
	Users, Conns int
	Truncated    bool
	// Entries are (user, connections) pairs.
	Entries []PresenceEntry
	// Holders, on an answer to an ask: the other instances the sender
	// knows to hold users in the room, whose answers the asker waits for
	// before it tells events of a room it just started tracking.
	Holders []string
	// ReplyTo is set by the transport on a message that wants an answer:
	// the address to give SendPresence.
	ReplyTo string
}

// PresenceEntry is a user's connection count.
type PresenceEntry struct {
	User  string
	Conns int32
}

// presenceChange is a user's presence in a room turning on or off across
// all instances: a user:joined or user:left for the local members.
type presenceChange struct {
	room, user string
	joined     bool
	exclude    uint64 // a connection not to tell (the joining one), 0: none
}

type trackHolder struct {
	inst  string
	conns int32
}

type trackUser struct {
	holders []trackHolder
	leaveAt int64 // absent, user:left due at this time (unix ns); 0: not pending
}

// roomPeer is what a room knows of another instance's message numbers.
type roomPeer struct {
	inc, epoch, seq uint64
}

type trackRoom struct {
	users   map[string]*trackUser
	present int // users with a holder
	conns   int // connections over all holders
	local   int // users with connections here

	epoch, seq uint64               // this instance's message numbers for the room
	peers      map[string]*roomPeer // other instances' numbers
	partial    map[string][]PresenceEntry
	silent     uint64      // the initial ask's token: its answers tell no events
	init       *initialAsk // the initial ask while its answers are outstanding

	// A resync's confirmation round: instances that neither answer the
	// ask (token confirmQ) nor send a delta by confirmBy no longer track
	// the room, and what they held there goes (their leave was lost).
	confirmQ  uint64
	confirmBy int64
	confirmed map[string]bool

	sorted   []string // present users, sorted; valid while sortedOK
	sortedOK bool
}

// initialAsk is a room's initial state transfer while the answers are
// outstanding: the room's events are held (see the top of this file).
// Bounded: one entry per user whose presence changed meanwhile, one per
// instance heard or waited for.
type initialAsk struct {
	q        uint64
	by       int64           // deadline (unix ns): decide with what is known then
	answered bool            // an answer to one of this instance's asks arrived
	want     map[string]bool // instances the answers say hold users in the room
	heard    map[string]bool // instances whose whole state arrived
	held     map[string]heldUser
}

// heldUser is a user whose presence changed while the room's initial ask
// was outstanding.
type heldUser struct {
	before bool // present before: here when first changed, or in an answer
	// src is the instance whose message (a delta, or its own ask) made the
	// user present during the wait, or "" (held for a leave). That
	// instance's answer then shows the arrival it already told, not a
	// presence from before: two instances that start tracking the room at
	// once each hear the other's ask before its answer.
	src      string
	exclude  uint64 // the connection whose join made it present here
	graceful bool   // its last leave was graceful (user:left after the grace)
}

type trackInstance struct {
	inc     uint64
	holding int   // (room, user) pairs it holds
	heard   int64 // when a message from it was last applied (unix ns)
}

type pendingLeave struct {
	room, user string
	at         int64
}

// tracker is the presence state machine; see the top of this file.
type tracker struct {
	self    string
	inc     uint64
	grace   int64 // ns
	rooms   map[string]*trackRoom
	insts   map[string]*trackInstance
	pending []pendingLeave // in due order (the grace is constant)
	epochs  uint64         // last epoch handed out
	changes []presenceChange
	resync  map[string]bool   // rooms whose state must be asked again (gaps)
	inits   map[uint64]string // initial asks outstanding: token -> room
}

func newTracker(self string, inc uint64, grace int64) *tracker {
	return &tracker{self: self, inc: inc, grace: grace, rooms: map[string]*trackRoom{},
		insts: map[string]*trackInstance{}, resync: map[string]bool{}, inits: map[uint64]string{}}
}

// takeChanges returns the changes since the last call (the slice is
// reused: use it before the next call into the tracker).
func (t *tracker) takeChanges() []presenceChange {
	c := t.changes
	t.changes = t.changes[:0]
	return c
}

// tracked reports whether the room has local members.
func (t *tracker) tracked(room string) bool { return t.rooms[room] != nil }

// setLocal records that user has n connections in room on this instance
// (the registry's count). It returns the delta to send to the room's
// other instances (nil when nothing changed), and whether the room just
// started (subscribe, then send ownState with Ask) or ended (send the
// delta, then unsubscribe) being tracked. exclude is the connection that
// just joined, not told of its own user's arrival.
func (t *tracker) setLocal(room, user string, n int, exclude uint64, now int64) (delta *PresenceMsg, started, ended bool) {
	rm := t.rooms[room]
	if rm == nil {
		if n <= 0 {
			return nil, false, false
		}
		t.epochs++
		rm = &trackRoom{users: map[string]*trackUser{}, peers: map[string]*roomPeer{}, epoch: t.epochs}
		t.rooms[room] = rm
		started = true
	}
	if !t.set(rm, room, user, t.self, int32(max(n, 0)), exclude, now, true, false) {
		return nil, started, false
	}
	rm.seq++
	delta = &PresenceMsg{Type: PresenceDelta, Room: room, From: t.self, Inc: t.inc, Epoch: rm.epoch, Seq: rm.seq,
		Entries: []PresenceEntry{{User: user, Conns: int32(max(n, 0))}}}
	if rm.local == 0 {
		t.dropRoom(room, rm)
		ended = true
	}
	return delta, started, ended
}

// set sets inst's connections of user in the room and records the change
// of the user's presence, if any. graceful: a vanishing user leaves after
// the grace; silent: no change is recorded (an initial state transfer
// tells what was there before, not what happened). It reports whether
// anything changed.
func (t *tracker) set(rm *trackRoom, room, user, inst string, n int32, exclude uint64, now int64, graceful, silent bool) bool {
	u := rm.users[user]
	if u == nil {
		if n <= 0 {
			return false
		}
		u = &trackUser{}
		rm.users[user] = u
	}
	i := slices.IndexFunc(u.holders, func(h trackHolder) bool { return h.inst == inst })
	old := int32(0)
	if i >= 0 {
		old = u.holders[i].conns
	}
	if old == n {
		return false
	}
	wasPresent := len(u.holders) > 0
	rm.conns += int(n - old)
	switch {
	case i < 0:
		u.holders = append(u.holders, trackHolder{inst: inst, conns: n})
		t.holding(inst, 1)
		if inst == t.self {
			rm.local++
		}
	case n <= 0:
		u.holders = slices.Delete(u.holders, i, i+1)
		t.holding(inst, -1)
		if inst == t.self {
			rm.local--
		}
	default:
		u.holders[i].conns = n
	}
	isPresent := len(u.holders) > 0
	if wasPresent == isPresent {
		return true
	}
	rm.sortedOK = false
	if isPresent {
		rm.present++
		switch {
		case u.leaveAt != 0:
			u.leaveAt = 0 // back within the grace: no left, no joined
		case silent:
		case rm.init != nil:
			h := rm.init.hold(user, false)
			if h.src == "" {
				h.src = inst
			}
			h.exclude = exclude
			rm.init.held[user] = h
		default:
			t.changes = append(t.changes, presenceChange{room: room, user: user, joined: true, exclude: exclude})
		}
		return true
	}
	rm.present--
	if rm.init != nil && !silent {
		h := rm.init.hold(user, true)
		h.graceful = graceful
		rm.init.held[user] = h
		delete(rm.users, user) // decided when the answers are in
		return true
	}
	if graceful && t.grace > 0 && !silent {
		u.leaveAt = now + t.grace
		t.pending = append(t.pending, pendingLeave{room: room, user: user, at: u.leaveAt})
		return true
	}
	delete(rm.users, user)
	if !silent {
		t.changes = append(t.changes, presenceChange{room: room, user: user})
	}
	return true
}

func (t *tracker) holding(inst string, d int) {
	if inst == t.self {
		return
	}
	in := t.insts[inst]
	if in == nil {
		in = &trackInstance{}
		t.insts[inst] = in
	}
	in.holding += d
}

// dropRoom forgets a room nobody here is in any more: nobody local is
// left to tell, and the others track it without us.
func (t *tracker) dropRoom(room string, rm *trackRoom) {
	for _, u := range rm.users {
		for _, h := range u.holders {
			t.holding(h.inst, -1)
		}
	}
	if rm.init != nil {
		delete(t.inits, rm.init.q)
	}
	delete(t.rooms, room)
	delete(t.resync, room)
}

// hold returns user's held entry, new (its presence before: was) when the
// user had none.
func (ia *initialAsk) hold(user string, was bool) heldUser {
	h, ok := ia.held[user]
	if !ok {
		h.before = was
	}
	return h
}

// beginInitial starts the room's initial ask q: its answers tell no
// events, and the room's events are held until they are in, or until
// deadline.
func (t *tracker) beginInitial(room string, q uint64, deadline int64) {
	rm := t.rooms[room]
	if rm == nil {
		return
	}
	rm.silent = q
	if rm.init != nil {
		delete(t.inits, rm.init.q)
	}
	rm.init = &initialAsk{q: q, by: deadline, want: map[string]bool{}, heard: map[string]bool{}, held: map[string]heldUser{}}
	t.inits[q] = room
}

// noAnswer: nobody else tracks the room of ask q (NATS's no responders),
// so what is known here is complete.
func (t *tracker) noAnswer(q uint64, now int64) {
	if room, ok := t.inits[q]; ok {
		t.endInitial(room, t.rooms[room], now)
	}
}

// endInitials ends the initial asks past their deadline.
func (t *tracker) endInitials(now int64) {
	for _, room := range t.inits {
		if rm := t.rooms[room]; now >= rm.init.by {
			t.endInitial(room, rm, now)
		}
	}
}

// initialHeard notes inst's whole state (an answer, or its own ask) for
// the room's initial ask, and ends it when every instance said to hold
// users there was heard.
func (t *tracker) initialHeard(room string, rm *trackRoom, m *PresenceMsg, now int64) {
	ia := rm.init
	if ia == nil {
		return
	}
	ia.heard[m.From] = true
	if !m.Ask && m.Query != 0 {
		ia.answered = true
		for _, inst := range m.Holders {
			if inst != t.self {
				ia.want[inst] = true
			}
		}
	}
	t.maybeEndInitial(room, rm, now)
}

func (t *tracker) maybeEndInitial(room string, rm *trackRoom, now int64) {
	if !rm.init.answered {
		return
	}
	for inst := range rm.init.want {
		if !rm.init.heard[inst] {
			return
		}
	}
	t.endInitial(room, rm, now)
}

// endInitial tells the held events that are real: a user present before
// (here, or in an answer) and present now had no event, whatever moved in
// between. Leaves keep the grace, counted from now.
func (t *tracker) endInitial(room string, rm *trackRoom, now int64) {
	ia := rm.init
	delete(t.inits, ia.q)
	rm.init = nil
	users := make([]string, 0, len(ia.held))
	for user := range ia.held {
		users = append(users, user)
	}
	sort.Strings(users)
	for _, user := range users {
		h := ia.held[user]
		u := rm.users[user]
		after := u != nil && len(u.holders) > 0
		switch {
		case after && !h.before:
			t.changes = append(t.changes, presenceChange{room: room, user: user, joined: true, exclude: h.exclude})
		case !after && h.before && h.graceful && t.grace > 0:
			if u == nil {
				u = &trackUser{}
				rm.users[user] = u
			}
			u.leaveAt = now + t.grace
			t.pending = append(t.pending, pendingLeave{room: room, user: user, at: u.leaveAt})
		case !after && h.before:
			delete(rm.users, user)
			t.changes = append(t.changes, presenceChange{room: room, user: user})
		}
	}
}

// expire tells user:left for users whose grace ended before now.
func (t *tracker) expire(now int64) {
	n := 0
	for _, p := range t.pending {
		if p.at > now {
			break
		}
		n++
		rm := t.rooms[p.room]
		if rm == nil {
			continue
		}
		if u := rm.users[p.user]; u != nil && u.leaveAt == p.at && len(u.holders) == 0 {
			delete(rm.users, p.user)
			t.changes = append(t.changes, presenceChange{room: p.room, user: p.user})
		}
	}
	t.pending = slices.Delete(t.pending, 0, n)
}

// nextDue is when the first pending user:left is due (0: none).
func (t *tracker) nextDue() int64 {
	if len(t.pending) == 0 {
		return 0
	}
	return t.pending[0].at
}

// known checks m's sender incarnation: a greater one replaces the old
// instance (its holdings go, with the grace: its users may be back on the
// new one at once); a smaller one is stale. It reports whether to apply m.
func (t *tracker) known(m *PresenceMsg, now int64) bool {
	in := t.insts[m.From]
	if in != nil && m.Inc < in.inc {
		return false
	}
	if in != nil && m.Inc > in.inc && in.inc != 0 {
		t.dropInstance(m.From, now, true)
		in = nil
	}
	if in == nil {
		in = &trackInstance{}
		t.insts[m.From] = in
	}
	in.inc, in.heard = m.Inc, now
	return true
}

// applyHello notes another instance's incarnation (known does the work).
func (t *tracker) applyHello(m *PresenceMsg, now int64) {
	if m.From != t.self {
		t.known(m, now)
	}
}

// applyDelta applies another instance's delta. A message out of sequence
// (one was lost) marks the room for a resync.
func (t *tracker) applyDelta(m *PresenceMsg, now int64) {
	rm := t.rooms[m.Room]
	if rm == nil || m.From == t.self || !t.known(m, now) {
		return
	}
	p := rm.peers[m.From]
	switch {
	case p == nil || p.inc != m.Inc || p.epoch != m.Epoch:
		if m.Seq != 1 && p != nil {
			t.resync[m.Room] = true
		}
		p = &roomPeer{inc: m.Inc, epoch: m.Epoch}
		rm.peers[m.From] = p
	case m.Seq <= p.seq:
		return // had it (a state transfer covered it)
	case m.Seq > p.seq+1:
		t.resync[m.Room] = true
	}
	p.seq = m.Seq
	if rm.confirmBy != 0 {
		rm.confirmed[m.From] = true // it still tracks the room
	}
	for _, e := range m.Entries {
		t.set(rm, m.Room, e.User, m.From, e.Conns, 0, now, true, false)
	}
}

// applyState applies a chunk of another instance's state of a room; the
// last chunk replaces everything that instance held there. silent: the
// answer to this instance's initial ask, which tells what was there, not
// what happened.
func (t *tracker) applyState(m *PresenceMsg, now int64) {
	rm := t.rooms[m.Room]
	if rm == nil || m.From == t.self || !t.known(m, now) {
		return
	}
	if !m.Last {
		if rm.partial == nil {
			rm.partial = map[string][]PresenceEntry{}
		}
		rm.partial[m.From] = append(rm.partial[m.From], m.Entries...)
		return
	}
	entries := m.Entries
	if part := rm.partial[m.From]; part != nil {
		entries = append(part, entries...)
		delete(rm.partial, m.From)
	}
	// An answer (no Ask) to this instance's initial ask: tokens are this
	// instance's own, and a state with Ask is another instance's question.
	silent := !m.Ask && m.Query != 0 && m.Query == rm.silent
	if rm.init != nil {
		defer t.initialHeard(m.Room, rm, m, now)
		if silent { // its users were there before
			for _, e := range entries {
				if h, ok := rm.init.held[e.User]; ok && e.Conns > 0 && h.src != m.From {
					h.before = true
					rm.init.held[e.User] = h
				}
			}
		}
	}
	if p := rm.peers[m.From]; p != nil && p.inc == m.Inc && p.epoch == m.Epoch && m.Seq < p.seq {
		return // a delta newer than this state was applied already
	}
	rm.peers[m.From] = &roomPeer{inc: m.Inc, epoch: m.Epoch, seq: m.Seq}
	if rm.confirmBy != 0 {
		rm.confirmed[m.From] = true // it still tracks the room
	}
	has := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		has[e.User] = struct{}{}
		t.set(rm, m.Room, e.User, m.From, e.Conns, 0, now, true, silent)
	}
	for user, u := range rm.users {
		if _, ok := has[user]; ok {
			continue
		}
		if slices.ContainsFunc(u.holders, func(h trackHolder) bool { return h.inst == m.From }) {
			t.set(rm, m.Room, user, m.From, 0, 0, now, true, silent)
		}
	}
}

// beginConfirm starts a confirmation round for the room's resync ask q:
// see trackRoom.confirmQ.
func (t *tracker) beginConfirm(room string, q uint64, deadline int64) {
	if rm := t.rooms[room]; rm != nil {
		rm.confirmQ, rm.confirmBy, rm.confirmed = q, deadline, map[string]bool{}
	}
}

// endConfirms ends the confirmation rounds due by now: the holdings of
// instances that did not confirm go, with the grace.
func (t *tracker) endConfirms(now int64) {
	for room, rm := range t.rooms {
		if rm.confirmBy == 0 || now < rm.confirmBy {
			continue
		}
		for user, u := range rm.users {
			var gone []string
			for _, h := range u.holders {
				if h.inst != t.self && !rm.confirmed[h.inst] {
					gone = append(gone, h.inst)
				}
			}
			for _, inst := range gone {
				t.set(rm, room, user, inst, 0, 0, now, true, false)
			}
		}
		rm.confirmQ, rm.confirmBy, rm.confirmed = 0, 0, nil
	}
}

// dropInstance removes everything inst holds. graceful: its users leave
// after the grace (a restart: they may come back at once); otherwise at
// once (lost: the instance timeout was the grace).
func (t *tracker) dropInstance(inst string, now int64, graceful bool) {
	if inst == t.self {
		return
	}
	for room, rm := range t.rooms {
		for user, u := range rm.users {
			if slices.ContainsFunc(u.holders, func(h trackHolder) bool { return h.inst == inst }) {
				t.set(rm, room, user, inst, 0, 0, now, graceful, false)
			}
		}
		delete(rm.peers, inst)
		delete(rm.partial, inst)
	}
	delete(t.insts, inst)
	for _, room := range t.inits { // its answer is not coming
		rm := t.rooms[room]
		if rm.init.want[inst] {
			delete(rm.init.want, inst)
			t.maybeEndInitial(room, rm, now)
		}
	}
}

// silentPeers returns the instances holding something here that were not
// heard since before (unix ns) and that alive does not vouch for.
func (t *tracker) silentPeers(before int64, alive func(id string) bool) []string {
	var out []string
	for id, in := range t.insts {
		if in.holding > 0 && in.heard < before && !alive(id) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// ownState returns this instance's state of the room in chunks of at most
// maxEntries entries and maxBytes of user names.
func (t *tracker) ownState(room string, ask bool, query uint64, maxEntries, maxBytes int) []*PresenceMsg {
	rm := t.rooms[room]
	if rm == nil {
		return nil
	}
	var entries []PresenceEntry
	for user, u := range rm.users {
		for _, h := range u.holders {
			if h.inst == t.self {
				entries = append(entries, PresenceEntry{User: user, Conns: h.conns})
			}
		}
	}
	msgs := chunkEntries(entries, maxEntries, maxBytes, func() *PresenceMsg {
		return &PresenceMsg{Type: PresenceState, Room: room, From: t.self, Inc: t.inc, Epoch: rm.epoch, Seq: rm.seq, Query: query}
	})
	last := msgs[len(msgs)-1]
	last.Ask = ask
	if !ask && query != 0 { // an answer: who else the asker should hear
		last.Holders = t.holders(rm)
	}
	return msgs
}

// holders lists the other instances holding users in the room.
func (t *tracker) holders(rm *trackRoom) []string {
	var out []string
	for _, u := range rm.users {
		for _, h := range u.holders {
			if h.inst != t.self && !slices.Contains(out, h.inst) {
				out = append(out, h.inst)
			}
		}
	}
	sort.Strings(out)
	return out
}

// view answers a query of a tracked room: at most q.Limit users, sorted,
// and the totals, in one message (the limit keeps it small).
func (t *tracker) view(q *PresenceMsg) *PresenceMsg {
	users, truncated := t.users(q.Room, q.Limit)
	m := &PresenceMsg{Type: PresenceView, Room: q.Room, From: t.self, Inc: t.inc, Query: q.Query, Last: true,
		Truncated: truncated, Entries: make([]PresenceEntry, len(users))}
	m.Users, m.Conns = t.stats(q.Room)
	for i, u := range users {
		m.Entries[i] = PresenceEntry{User: u}
	}
	return m
}

// localUsers lists the users with connections here in room.
func (t *tracker) localUsers(room string) []string {
	rm := t.rooms[room]
	if rm == nil {
		return nil
	}
	var out []string
	for user, u := range rm.users {
		if slices.ContainsFunc(u.holders, func(h trackHolder) bool { return h.inst == t.self }) {
			out = append(out, user)
		}
	}
	return out
}

// size is the tracked rooms and (room, user) pairs.
func (t *tracker) size() (rooms, pairs int) {
	for _, rm := range t.rooms {
		pairs += len(rm.users)
	}
	return len(t.rooms), pairs
}

// chunkEntries splits entries into messages made by mk; the last has
// Last set. There is always at least one.
func chunkEntries(entries []PresenceEntry, maxEntries, maxBytes int, mk func() *PresenceMsg) []*PresenceMsg {
	cur := mk()
	out := []*PresenceMsg{cur}
	size := 0
	for _, e := range entries {
		if len(cur.Entries) >= maxEntries || (size+len(e.User) > maxBytes && len(cur.Entries) > 0) {
			cur = mk()
			out = append(out, cur)
			size = 0
		}
		cur.Entries = append(cur.Entries, e)
		size += len(e.User) + 16
	}
	cur.Last = true
	return out
}

// users returns up to limit present users of the room, sorted, and
// whether there were more (limit <= 0: all).
func (t *tracker) users(room string, limit int) ([]string, bool) {
	rm := t.rooms[room]
	if rm == nil {
		return []string{}, false
	}
	if !rm.sortedOK {
		rm.sorted = rm.sorted[:0]
		for user, u := range rm.users {
			if len(u.holders) > 0 {
				rm.sorted = append(rm.sorted, user)
			}
		}
		sort.Strings(rm.sorted)
		rm.sortedOK = true
	}
	out := rm.sorted
	truncated := limit > 0 && len(out) > limit
	if truncated {
		out = out[:limit]
	}
	return append([]string(nil), out...), truncated
}

// stats returns the room's present users and their connections.
func (t *tracker) stats(room string) (users, conns int) {
	if rm := t.rooms[room]; rm != nil {
		return rm.present, rm.conns
	}
	return 0, 0
}

// trackedRooms lists the tracked rooms (for a resync of everything).
func (t *tracker) trackedRooms() []string {
	out := make([]string, 0, len(t.rooms))
	for room := range t.rooms {
		out = append(out, room)
	}
	sort.Strings(out)
	return out
}
