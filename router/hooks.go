package router

// Hooks (PROTOCOL.md section 10): the gateway asks a service whether a
// connection may be admitted (gw.hook.connect) or may join a room
// (gw.hook.join) without ever holding an event loop.
//
// The loop builds the request, files it in its shard's hookBook under a
// token (loop index in the top byte, a per-loop counter below) and queues it
// for the upstream goroutine (events.go), which publishes it with a reply
// subject on the instance's one reply subscription. The backplane hands the
// answer to Router.hookReply (a NATS goroutine), which posts it to the
// owning loop by the token's loop index. Every request waits with the same
// timeout, so the loop's pending requests are in deadline order: a FIFO
// checked at each tick (OnTick) is the timer, with nothing per request
// but a deadline. An answer after the timeout finds no entry and is
// ignored.
//
// A connection waiting for its connect hook is not admitted: it is not in
// any table, gets no deliveries, and every message but ping gets
// `error unauthorized`.

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// DefaultHookTimeout is how long a hook may take to answer.
const DefaultHookTimeout = 2 * time.Second

// maxHookJoins bounds the join hooks in flight per connection; past it a
// join gets `error rate_limited`.
const maxHookJoins = 16

// Close codes of the connect hook.
const (
	CloseHookDenied      = 4503 // the hook said no
	CloseHookUnavailable = 1013 // no answer in time, or nobody listening: try again later
)

// Hook kinds, for HookStats.
const (
	HookConnect = iota
	HookJoin
	hookKinds
)

// Hook outcomes, for HookStats.
const (
	HookAllow = iota
	HookDeny
	HookTimeout
	HookUnavailable
	HookMalformed
	hookOutcomes
)

// HookKindNames and HookOutcomeNames label HookStats (metrics).
var (
	HookKindNames    = [hookKinds]string{"connect", "join"}
	HookOutcomeNames = [hookOutcomes]string{"allow", "deny", "timeout", "unavailable", "malformed"}
)

// HookStats counts each hook's outcomes: [kind][outcome].
type HookStats [hookKinds][hookOutcomes]uint64

type hookCounters [hookKinds][hookOutcomes]atomic.Uint64

// HookStats returns the hook outcome counters.
func (r *Router) HookStats() HookStats {
	var st HookStats
	for k := range st {
		for o := range st[k] {
			st[k][o] = r.hookCount[k][o].Load()
		}
	}
	return st
}

// pendingHook is one hook request waiting for its answer (its loop only).
type pendingHook struct {
	token    uint64
	kind     int
	cl       *client
	room     []byte // join: the room
	id       []byte // the client's request id (auth or join)
	deadline int64  // unix nanos
	done     bool   // answered (still in the FIFO until it reaches the head)
}

// hookBook is one loop's hook requests in flight.
type hookBook struct {
	seq     uint64
	pending map[uint64]*pendingHook
	fifo    []*pendingHook // in deadline order; done entries skipped
	head    int
}

// hookAnswer carries an answer from a NATS goroutine to the loop.
type hookAnswer struct {
	token        uint64
	data         []byte
	noResponders bool
}

// hookAnswerBody is what a hook answers; fields of the wrong type make the
// answer malformed.
type hookAnswerBody struct {
	Allow    *bool    `json:"allow"`
	Reason   *string  `json:"reason"`
	Rooms    []string `json:"rooms"`
	Channels []string `json:"channels"`
}

// bindUpstream starts the upstream queue when events or hooks are on.
func (r *Router) bindUpstream() error {
	o := &r.opts
	if !o.Events && !o.HookConnect && len(o.HookJoin) == 0 {
		return nil
	}
	up, ok := o.Backplane.(Upstream)
	if !ok {
		return errNoUpstream
	}
	for _, p := range o.HookJoin {
		if !auth.ValidPattern(p) {
			return &hookPatternError{pattern: p}
		}
	}
	up.ServeUpstreamReplies(r.hookReply)
	r.upPrefix = up.UpstreamPrefix()
	r.upConnect, r.upDisconnect = r.upPrefix+".event.connect", r.upPrefix+".event.disconnect"
	r.upq = newUpstreamQueue(up, o.EventQueueBytes, func(token uint64) { r.hookReply(token, nil, true) })
	return nil
}

type hookPatternError struct{ pattern string }

func (e *hookPatternError) Error() string {
	return "router: hook-join pattern " + strconv.Quote(e.pattern) + ": want a room glob as in the rooms claim (* within a token, ** across dots)"
}

type upstreamError struct{}

func (upstreamError) Error() string {
	return "router: events and hooks need a backplane that reaches services (NATS)"
}

var errNoUpstream error = upstreamError{}

// hookReply takes an answer (any goroutine) and posts it to its loop;
// noResponders (also: the request could not be sent) is unavailable.
func (r *Router) hookReply(token uint64, data []byte, noResponders bool) {
	i := int(token >> 56)
	if i >= len(r.shards) {
		return
	}
	r.shards[i].loop.Post(engine.Task{Fn: hookAnswerTask, Arg: &hookAnswer{token: token, data: data, noResponders: noResponders}})
}

// ask files a hook request on cl's loop and queues it; false when the
// queue refused it (the caller answers unavailable).
func (r *Router) ask(cl *client, kind int, subject string, body []byte, room, id []byte) (*pendingHook, bool) {
	s := cl.shard
	b := &s.hooks
	b.seq++
	token := uint64(s.loop.Index())<<56 | b.seq&(1<<56-1)
	if !r.upq.push(subject, token, body) {
		return nil, false
	}
	if b.pending == nil {
		b.pending = map[uint64]*pendingHook{}
	}
	p := &pendingHook{token: token, kind: kind, cl: cl, deadline: time.Now().Add(r.opts.HookTimeout).UnixNano()}
	if len(room) > 0 {
		p.room = append([]byte(nil), room...)
	}
	if len(id) > 0 {
		p.id = append([]byte(nil), id...)
	}
	b.pending[token] = p
	b.fifo = append(b.fifo, p)
	return p, true
}

func hookAnswerTask(l *engine.Loop, arg any) {
	s := l.Data().(*shard)
	a := arg.(*hookAnswer)
	p := s.hooks.pending[a.token]
	if p == nil {
		return // timed out already
	}
	delete(s.hooks.pending, a.token)
	p.done = true
	r := s.r
	if a.noResponders {
		r.hookDone(p, HookUnavailable, nil)
		return
	}
	var body hookAnswerBody
	outcome := HookDeny
	if err := json.Unmarshal(a.data, &body); err != nil || !validAnswer(&body) ||
		len(body.Rooms)+len(body.Channels) > r.opts.MaxSubscriptions {
		outcome = HookMalformed
	} else if body.Allow != nil && *body.Allow {
		outcome = HookAllow
	}
	r.hookDone(p, outcome, &body)
}

// validAnswer checks the names a hook gives (JSON types were checked by
// the decoder); more names than -max-subscriptions is malformed too.
func validAnswer(b *hookAnswerBody) bool {
	for _, n := range b.Rooms {
		if !wire.ValidName([]byte(n)) {
			return false
		}
	}
	for _, n := range b.Channels {
		if !wire.ValidName([]byte(n)) {
			return false
		}
	}
	return true
}

// expireHooks times out the loop's requests whose deadline passed (OnTick).
func (r *Router) expireHooks(s *shard) {
	b := &s.hooks
	if b.head == len(b.fifo) {
		return
	}
	now := time.Now().UnixNano()
	for b.head < len(b.fifo) {
		p := b.fifo[b.head]
		if !p.done && p.deadline > now {
			break
		}
		b.fifo[b.head] = nil
		b.head++
		if !p.done {
			delete(b.pending, p.token)
			p.done = true
			r.hookDone(p, HookTimeout, nil)
		}
	}
	if b.head == len(b.fifo) {
		b.fifo, b.head = b.fifo[:0], 0
	} else if b.head > 1024 && b.head > len(b.fifo)/2 {
		n := copy(b.fifo, b.fifo[b.head:])
		clear(b.fifo[n:])
		b.fifo, b.head = b.fifo[:n], 0
	}
}

// hookDone acts on a hook's outcome (the loop).
func (r *Router) hookDone(p *pendingHook, outcome int, body *hookAnswerBody) {
	r.hookCount[p.kind][outcome].Add(1)
	cl := p.cl
	if p.kind == HookJoin {
		cl.hookJoins--
	}
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	if p.kind == HookConnect {
		r.connectHookDone(cl, p, outcome, body)
		return
	}
	switch outcome {
	case HookAllow:
		r.addMembership(cl, p.id, KindRoom, p.room, true, "", "joined", "room")
	case HookTimeout, HookUnavailable:
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "join hook did not answer"}, p.id)
	case HookMalformed:
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: "join hook: malformed answer"}, p.id)
	default:
		msg := "join hook denied"
		if body != nil && body.Reason != nil && *body.Reason != "" {
			msg = *body.Reason
		}
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: msg}, p.id)
	}
}

func (r *Router) connectHookDone(cl *client, p *pendingHook, outcome int, body *hookAnswerBody) {
	cl.hookWait = 0
	switch outcome {
	case HookAllow:
		cl.hookPassed = true
		r.activate(cl, p.id)
		for _, room := range body.Rooms {
			r.serverJoin(cl, KindRoom, room, wire.ReplyJoined, "room")
		}
		for _, ch := range body.Channels {
			r.serverJoin(cl, KindChannel, ch, "subscribed", "channel")
		}
	case HookTimeout, HookUnavailable:
		cl.conn.Close(CloseHookUnavailable, "connect hook did not answer")
	case HookMalformed:
		cl.conn.Close(CloseHookDenied, "connect hook: malformed answer")
	default:
		reason := "denied"
		if body != nil && body.Reason != nil && *body.Reason != "" {
			reason = *body.Reason
		}
		cl.conn.Close(CloseHookDenied, reason)
	}
}

// serverJoin joins cl to an address on the gateway's own account (past the
// claims) and tells it `joined {room, server:true}`.
func (r *Router) serverJoin(cl *client, kind Kind, name, reply, key string) {
	if cl.member(kind, []byte(name)) >= 0 {
		return
	}
	r.joinAddr(cl, kind, name)
	if r.settleNeededForJoin() {
		r.holdOutput(cl)
	}
	s := cl.shard
	s.out = cl.codec.AppendServerJoined(s.out[:0], reply, key, []byte(name))
	s.write(cl, s.out)
}

// askConnectHook sends gw.hook.connect for cl (valid token, not admitted).
func (r *Router) askConnectHook(cl *client, clientID []byte) {
	b := make([]byte, 0, 256)
	b = append(b, `{"user":`...)
	b = wire.AppendJSONString(b, cl.user)
	b = append(b, `,"conn":"`...)
	b = strconv.AppendUint(b, cl.conn.ID(), 36)
	b = append(b, `","instance":`...)
	b = wire.AppendJSONString(b, r.opts.InstanceID)
	b = append(b, `,"claims":`...)
	b = appendClaimsJSON(b, cl.grant())
	b = append(b, '}')
	p, ok := r.ask(cl, HookConnect, r.upPrefix+".hook.connect", b, nil, clientID)
	if !ok {
		r.hookCount[HookConnect][HookUnavailable].Add(1)
		cl.conn.Close(CloseHookUnavailable, "connect hook unavailable")
		return
	}
	cl.hookWait = p.token
}

// askJoinHook sends gw.hook.join for a join of a room matching -hook-join.
func (r *Router) askJoinHook(cl *client, e *wire.Envelope) {
	if cl.hookJoins >= maxHookJoins {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeRateLimited, Message: "too many joins waiting for the join hook"}, e.ID)
		return
	}
	b := make([]byte, 0, 96+len(e.Room))
	b = append(b, `{"user":`...)
	b = wire.AppendJSONString(b, cl.user)
	b = append(b, `,"conn":"`...)
	b = strconv.AppendUint(b, cl.conn.ID(), 36)
	b = append(b, `","room":`...)
	b = wire.AppendJSONString(b, string(e.Room))
	b = append(b, '}')
	if _, ok := r.ask(cl, HookJoin, r.upPrefix+".hook.join", b, e.Room, e.ID); !ok {
		r.hookCount[HookJoin][HookUnavailable].Add(1)
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "join hook unavailable"}, e.ID)
		return
	}
	cl.hookJoins++
}

// joinHookFor reports whether a join of room asks the join hook.
func (r *Router) joinHookFor(room []byte) bool {
	for _, p := range r.opts.HookJoin {
		if auth.MatchPattern(p, string(room)) {
			return true
		}
	}
	return false
}

// appendClaimsJSON writes the token's claims as the connect hook sees them.
func appendClaimsJSON(b []byte, g auth.Grant) []byte {
	c := g.Claims() // shares g.Perms's lists: read only
	b = append(b, `{"sub":`...)
	b = wire.AppendJSONString(b, c.Sub)
	if !c.Exp.IsZero() {
		b = append(b, `,"exp":`...)
		b = strconv.AppendInt(b, c.Exp.Unix(), 10)
	}
	if c.RoomsSet {
		b = appendJSONStrings(append(b, `,"rooms":`...), c.Rooms)
	}
	if len(c.Pub) > 0 {
		b = appendJSONStrings(append(b, `,"pub":`...), c.Pub)
	}
	if c.SubChannelsSet {
		b = appendJSONStrings(append(b, `,"sub_channels":`...), c.SubChannels)
	}
	if c.RPCSet {
		b = appendJSONStrings(append(b, `,"rpc":`...), c.RPC)
	}
	if len(c.Tags) > 0 {
		b = append(b, `,"tags":{`...)
		first := true
		for k, v := range c.Tags {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = wire.AppendJSONString(b, k)
			b = append(b, ':')
			b = wire.AppendJSONString(b, v)
		}
		b = append(b, '}')
	}
	if c.Admin {
		b = append(b, `,"admin":true`...)
	}
	return append(b, '}')
}

func appendJSONStrings(b []byte, vs []string) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendJSONString(b, v)
	}
	return append(b, ']')
}
