package router

// History mode (PROTOCOL.md section 6): room messages are kept in a stream,
// every delivered room message carries the stream's `seq`, and `resume
// {room, since}` replays the gap after a reconnect.
//
// # Design
//
// The store is the single source of order. A room message from a client is
// not delivered locally by the sending loop (as it is without history);
// the router hands it to the backplane's History.PublishStored, which
// stores it, and the store then hands it to every instance with members of
// the room, this one included, stamped with its sequence. So every receiver
// on every instance sees one room's messages in one order, the order of
// their sequence numbers, and a client's "last seq seen" is a valid resume
// point. The instance that published skips the sender's connection when its
// message comes back (Remote.OriginConn, outMsg.excludeID). The client's
// `ack {id}` is sent once the store acknowledged the message (it is durable
// then); a failed store answers `error unavailable` instead. With NATS this
// is JetStream with RePublish (natsbp/history.go): one stream captures
// <prefix>.room.>, so messages that services publish there are kept and
// numbered too, and the server republishes each stored message, with its
// sequence in headers, on <prefix>.live.room.<room>, to which instances
// subscribe by interest exactly as they subscribe to rooms without history.
// User, channel and broadcast messages, and everything without history,
// take the unchanged core path (local fan-out plus at-most-once Publish).
//
// # Resume
//
// handleResume (on the connection's loop) records a resumeState for
// (client, room) and calls History.Replay, which fetches on a backplane
// goroutine and posts pages of messages to the loop, in order, then one
// completion. While the state exists, live room messages for that client
// and room are held in it (holdForResume, from deliverTo) instead of being
// written. The loop writes the replayed messages (seq > since, in order),
// then the held live ones whose seq is above the last one written (the
// overlap is dropped), then `resumed {room, seq, recovered}` where seq is
// the last seq written (since when there was nothing). Live messages that
// reached the client before the resume message was processed may repeat in
// the replay: a client should join, then resume, and drop seq it has seen.
// Flow control applies to replayed messages like any other (a replay larger
// than -max-queue-bytes closes a slow client with 4009), and the held live
// messages are bounded by -max-queue-bytes too. Pages reach the loop in
// pieces of at most 1/8 of its inbox byte budget; when the loop refuses one
// (its budget spent), the rest of the replay is not written and the resume
// answers `error unavailable` (the client resumes again from the last seq
// it got). The connection may be gone
// when a page comes back: every task checks the state is still current.
//
// `recovered` is true when nothing of the room after since was lost: the
// message `since` of that room is still kept (the store deletes a room's
// messages oldest first, by count and by age, so nothing after it was
// deleted), or the store has never deleted any message. Otherwise it is
// false and the replay is whatever is still kept after since (possibly
// nothing), never presented as complete.
//
// A backplane without history (LocalHub) leaves history off, and `resume`
// answers `error unavailable`.

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// History is the optional Backplane ability behind history mode, found by a
// type assertion on Options.Backplane.
type History interface {
	// HistoryOn reports whether the backplane is configured to keep room
	// history; the router is in history mode exactly when it is.
	HistoryOn() bool
	// PublishStored stores a room message; once stored, the backplane
	// hands it (with Seq set) to every instance with members of the room,
	// including this one, in sequence order. It must not block and does
	// not keep m or its slices after returning; done runs once, on a
	// backplane goroutine, with the sequence or the error. An error return
	// means nothing was queued and done will not run.
	PublishStored(m *Remote, done func(seq uint64, err error)) error
	// Replay fetches the kept messages of room with Seq > since, in order,
	// on a backplane goroutine: page runs with consecutive batches, then
	// done runs once, with whether nothing after since was lost. Neither
	// runs concurrently with the other. It must not block; an error return
	// means nothing was queued.
	Replay(room string, since uint64, page func(msgs []*Remote), done func(recovered bool, err error)) error
}

// errHistoryOff and friends are history-mode errors.
var (
	errNoHistory     = errors.New("router: history mode needs a backplane with history (NATS with JetStream and history on)")
	errHistoryNotSet = errors.New("router: the backplane keeps history but Options.History is off")
	errUnavailable   = &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "history unavailable"}
)

// resumeKey names one resume in flight: a client and a room.
type resumeKey struct {
	cl   *client
	room string
}

// resumeTable is one loop's resumes in flight; owned by that loop.
type resumeTable map[resumeKey]*resumeState

// resumeState is one resume in flight, owned by the client's loop.
type resumeState struct {
	key       resumeKey
	id        []byte    // the client's message id, echoed in resumed
	last      uint64    // highest seq written to the client for this resume
	held      []*outMsg // live messages that arrived during the replay (retained)
	heldBytes int
	// lost is set (by the backplane goroutine) when a page could not be
	// handed to the loop (its inbox byte budget was spent): the rest is not
	// written and the resume answers `unavailable`, so the client resumes
	// again instead of missing a page.
	lost atomic.Bool
}

func (st *resumeState) releaseHeld() {
	for i, m := range st.held {
		m.release()
		st.held[i] = nil
	}
	st.held = nil
	st.heldBytes = 0
}

// bindHistory checks the history configuration and prepares the tables.
func (r *Router) bindHistory(loops int) error {
	h, ok := r.opts.Backplane.(History)
	on := ok && h.HistoryOn()
	switch {
	case r.opts.History && !on:
		return errNoHistory
	case !r.opts.History && on:
		return errHistoryNotSet
	case !on:
		return nil
	}
	r.hist = h
	r.resumes = make([]resumeTable, loops)
	for i := range r.resumes {
		r.resumes[i] = resumeTable{}
	}
	return nil
}

// History reports whether the router runs in history mode.
func (r *Router) History() bool { return r.hist != nil }

// publishStored sends a client's room message through the store; the ack
// (or error) comes back to the loop when the store answered.
func (r *Router) publishStored(cl *client, e *wire.Envelope, now time.Time) {
	s := cl.shard
	if len(e.Filter) > 0 {
		if _, err := wire.ParseFilter(e.Filter, cl.codec); err != nil {
			r.replyError(cl, err, e.ID)
			return
		}
	}
	s.msgSeq++
	mid := r.appendMessageID(nil, s) // the id the receivers see; the ack carries it with the seq
	rm := &Remote{Kind: KindRoom, Name: string(e.Room), From: cl.user, TS: now.UnixMilli(), Priority: e.Priority,
		ID: string(mid), Origin: r.opts.InstanceID, OriginConn: cl.conn.ID(), Data: e.Data, Filter: e.Filter}
	if cl.codec != wire.CodecJSON {
		var err error
		if rm.Data, err = wire.Transcode(nil, e.Data, cl.codec, wire.CodecJSON); err != nil {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "data has no JSON form: " + err.Error()}, e.ID)
			return
		}
		if len(e.Filter) > 0 {
			if rm.Filter, err = wire.Transcode(nil, e.Filter, cl.codec, wire.CodecJSON); err != nil {
				r.replyError(cl, &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "filter has no JSON form: " + err.Error()}, e.ID)
				return
			}
		}
	}
	var clientID []byte
	if len(e.ID) > 0 {
		clientID = append([]byte(nil), e.ID...)
	}
	loop := s.loop
	err := r.hist.PublishStored(rm, func(seq uint64, err error) {
		if err == nil && clientID == nil {
			return // nothing to say
		}
		loop.Post(engine.Task{Fn: storedAckTask, Arg: &storedAck{cl: cl, id: clientID, mid: mid, seq: seq, err: err}})
	})
	if err != nil {
		s.stats.BackplaneErrors++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "backplane unavailable"}, e.ID)
	}
}

type storedAck struct {
	cl  *client
	id  []byte
	mid []byte // gateway message id
	seq uint64 // the stream's sequence of the message
	err error
}

// storedAckTask answers a stored message on the sender's loop.
func storedAckTask(_ *engine.Loop, arg any) {
	a := arg.(*storedAck)
	cl := a.cl
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	r := cl.shard.r
	if a.err != nil {
		cl.shard.stats.BackplaneErrors++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "history store unavailable"}, a.id)
		return
	}
	r.replyAck(cl, a.id, a.mid, a.seq)
}

// publishServiceStored is PublishService for a room in history mode: it
// returns once the store acknowledged (or failed), and delivery, local
// included, comes back from the store.
func (r *Router) publishServiceStored(name string, data []byte, from string, priority wire.Priority, filter []byte) error {
	rm := &Remote{Kind: KindRoom, Name: name, From: from, Data: data, Filter: filter, Priority: priority,
		ID: string(r.appendServiceID(nil)), TS: time.Now().UnixMilli(), Origin: r.opts.InstanceID}
	done := make(chan error, 1)
	if err := r.hist.PublishStored(rm, func(_ uint64, err error) { done <- err }); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return ErrUnavailable
	}
}

// handleResume starts a replay for cl (on its loop).
func (r *Router) handleResume(cl *client, e *wire.Envelope) {
	s := cl.shard
	if cl.member(KindRoom, e.Room) < 0 && !cl.perms.MayJoin(e.Room) {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: "may not read this room"}, e.ID)
		return
	}
	t := r.resumes[s.loop.Index()]
	key := resumeKey{cl: cl, room: string(e.Room)}
	if t[key] != nil {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "a resume of this room is in progress"}, e.ID)
		return
	}
	st := &resumeState{key: key, last: e.Since}
	if len(e.ID) > 0 {
		st.id = append([]byte(nil), e.ID...)
	}
	t[key] = st
	loop := s.loop
	chunk := max(r.eopts.InboxBytes/8, 1) // a page is handed over in pieces that fit an inbox
	err := r.hist.Replay(key.room, e.Since, func(msgs []*Remote) {
		for len(msgs) > 0 && !st.lost.Load() {
			n, cost := 0, 0
			for n < len(msgs) && (n == 0 || cost+remoteCost(msgs[n]) <= chunk) {
				cost += remoteCost(msgs[n])
				n++
			}
			if !loop.PostBytes(engine.Task{Fn: replayPageTask, Arg: &replayPage{st: st, msgs: msgs[:n]}}, cost) {
				st.lost.Store(true)
			}
			msgs = msgs[n:]
		}
	}, func(recovered bool, err error) {
		loop.Post(engine.Task{Fn: replayDoneTask, Arg: &replayDone{st: st, recovered: recovered, err: err}})
	})
	if err != nil {
		delete(t, key)
		s.stats.BackplaneErrors++
		r.replyError(cl, errUnavailable, e.ID)
	}
}

// remoteCost is what a replayed message charges against a loop's inbox.
func remoteCost(rm *Remote) int {
	return len(rm.Data) + len(rm.Name) + len(rm.From) + len(rm.ID) + outMsgOverhead
}

type replayPage struct {
	st   *resumeState
	msgs []*Remote
}

type replayDone struct {
	st        *resumeState
	recovered bool
	err       error
}

// current reports whether st is still the live resume of a live connection.
func (st *resumeState) current() bool {
	cl := st.key.cl
	if cl.conn.State() >= engine.StateClosing {
		return false
	}
	return cl.shard.r.resumes[cl.shard.loop.Index()][st.key] == st
}

// replayPageTask writes one page of replayed messages (on the client's loop).
func replayPageTask(_ *engine.Loop, arg any) {
	p := arg.(*replayPage)
	st := p.st
	cl := st.key.cl
	s := cl.shard
	for _, rm := range p.msgs {
		if !st.current() || st.lost.Load() {
			return
		}
		if rm.Seq <= st.last {
			continue // never behind what the client has from this resume
		}
		m := s.r.outOfRemote(rm)
		if m == nil {
			continue
		}
		m.replay = true
		s.deliverTo(cl, m)
		m.release()
		st.last = rm.Seq
	}
}

// replayDoneTask ends a resume: the held live messages, then `resumed`.
func replayDoneTask(_ *engine.Loop, arg any) {
	d := arg.(*replayDone)
	st := d.st
	if !st.current() {
		return
	}
	cl := st.key.cl
	s := cl.shard
	r := s.r
	delete(r.resumes[s.loop.Index()], st.key) // from here live messages go straight out
	// After a lost page the client resumes again from st.last: write none
	// of the held live messages, which would skip the hole.
	lost := st.lost.Load()
	for i, m := range st.held {
		if !lost && m.seq > st.last && cl.conn.State() < engine.StateClosing {
			s.deliverTo(cl, m)
			st.last = m.seq
		}
		m.release()
		st.held[i] = nil
	}
	st.held = nil
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	if d.err != nil || st.lost.Load() {
		s.stats.BackplaneErrors++
		r.replyError(cl, errUnavailable, st.id)
		return
	}
	s.out = cl.codec.AppendResumed(s.out[:0], []byte(st.key.room), st.last, d.recovered, st.id)
	s.write(cl, s.out)
}

// holdForResume keeps a live room message back while cl is resuming that
// room (called by deliverTo on cl's loop for messages with a seq).
func (s *shard) holdForResume(cl *client, m *outMsg) bool {
	if m.kind != KindRoom || s.r.resumes == nil {
		return false
	}
	t := s.r.resumes[s.loop.Index()]
	if len(t) == 0 {
		return false
	}
	st := t[resumeKey{cl: cl, room: string(m.name)}]
	if st == nil {
		return false
	}
	m.retain()
	st.held = append(st.held, m)
	st.heldBytes += len(m.data)
	if st.heldBytes > s.r.eopts.MaxQueueBytes {
		s.stats.SlowConsumers++
		st.releaseHeld()
		cl.releaseHeld()
		cl.conn.CloseSlowConsumer() // close frame ahead of what is queued
	}
	return true
}

// dropResumes forgets cl's resumes (on close).
func (r *Router) dropResumes(cl *client) {
	t := r.resumes[cl.shard.loop.Index()]
	for k, st := range t {
		if k.cl == cl {
			st.releaseHeld()
			delete(t, k)
		}
	}
}

// outOfRemote turns a message from the backplane (live, or stored for a
// replay) into an outMsg: services' messages get an id and ts here. It is
// nil when the message cannot be delivered (a bad filter).
func (r *Router) outOfRemote(rm *Remote) *outMsg {
	m := newOutMsg()
	m.kind = rm.Kind
	m.name = append(m.name, rm.Name...)
	m.from = append(m.from, rm.From...)
	m.data = append(m.data, rm.Data...)
	if rm.ID != "" {
		m.id = append(m.id, rm.ID...)
	} else {
		m.id = r.appendServiceID(m.id)
	}
	m.ts = rm.TS
	if m.ts == 0 {
		m.ts = time.Now().UnixMilli()
	}
	m.priority = rm.Priority
	m.dataCodec = wire.CodecJSON
	m.seq, m.hasSeq = rm.Seq, rm.Seq != 0
	if len(rm.Filter) > 0 {
		f, err := wire.ParseFilter(rm.Filter, wire.CodecJSON)
		if err != nil {
			m.release()
			return nil
		}
		m.filter = f
	}
	return m
}
