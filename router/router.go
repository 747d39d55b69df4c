package router

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Options configures a Router. Zero values mean the documented default.
type Options struct {
	// InstanceID names this gateway instance in message ids and on the
	// backplane (default: 8 random hex digits).
	InstanceID string
	// Auth is how tokens are verified (a secret or a public key is required).
	Auth auth.Config
	// AuthTimeout bounds the wait for an auth message (default 5s).
	AuthTimeout time.Duration
	// PresenceEvents sends user:joined / user:left to room members.
	PresenceEvents bool
	// PresenceMaxUsers caps the users in one presence answer; past it the
	// answer says truncated (default DefaultPresenceMaxUsers, at most
	// MaxPresenceMaxUsers).
	PresenceMaxUsers int
	// PresenceGrace delays a user:left after a user's last connection
	// anywhere went, cancelled by a join meanwhile (default: the
	// backplane's heartbeat interval; negative: none). presence.go.
	PresenceGrace time.Duration
	// PresenceQueueBytes bounds the presence service's inbox (default
	// DefaultPresenceQueueBytes).
	PresenceQueueBytes int
	// RateMsgs is the sustained messages per second per connection (default 100; negative disables rate limiting).
	RateMsgs float64
	// RateBytes is the sustained inbound bytes per second per connection (default 1 MiB; negative: no byte limit).
	RateBytes float64
	// RateBurst is the bucket size in messages (default 2 x RateMsgs); the
	// byte bucket holds the same number of seconds' worth of RateBytes.
	RateBurst int
	// RateKickAfter closes with 1008 after this many rate-limited messages in a row (default 20; negative: never).
	RateKickAfter int
	// MaxSubscriptions caps rooms plus channels per connection (default 256).
	MaxSubscriptions int
	// Backplane connects instances; nil runs standalone.
	Backplane Backplane
	// TokenGrace is how long a connection stays open after its token's exp
	// (token_expired) waiting for a refresh before the 4011 close (default
	// 30s; negative: close at exp). PROTOCOL.md section 9, refresh.go.
	TokenGrace time.Duration
	// History turns on history mode (PROTOCOL.md section 6, history.go):
	// the Backplane must implement History with HistoryOn() true, and a
	// backplane in history mode needs it set.
	History bool
	// RPCTimeout bounds the wait for a service's answer to an rpc (default
	// 5s); past it the client gets `error timeout` (rpc.go).
	RPCTimeout time.Duration
	// RPCMaxInFlight caps the rpc requests in flight per connection
	// (default 16); past it `error rate_limited`.
	RPCMaxInFlight int
	// Events publishes lifecycle events (PROTOCOL.md section 10, events.go).
	Events bool
	// EventQueueBytes bounds events and hook requests waiting to be
	// published (default DefaultEventQueueBytes); past it events are dropped.
	EventQueueBytes int
	// HookConnect asks gw.hook.connect before admitting a connection (hooks.go).
	HookConnect bool
	// HookJoin lists room patterns whose joins ask gw.hook.join.
	HookJoin []string
	// HookTimeout bounds the wait for a hook's answer (default DefaultHookTimeout).
	HookTimeout time.Duration
}

func (o *Options) normalize() {
	setDefault(&o.AuthTimeout, 5*time.Second)
	setDefault(&o.TokenGrace, 30*time.Second)
	setDefault(&o.RateMsgs, 100)
	setDefault(&o.RateBytes, 1<<20)
	if o.RateBurst == 0 && o.RateMsgs > 0 {
		o.RateBurst = int(2 * o.RateMsgs)
	}
	setDefault(&o.RateKickAfter, 20)
	setDefault(&o.MaxSubscriptions, 256)
	setDefault(&o.RPCTimeout, 5*time.Second)
	setDefault(&o.RPCMaxInFlight, 16)
	setDefault(&o.EventQueueBytes, DefaultEventQueueBytes)
	setDefault(&o.HookTimeout, DefaultHookTimeout)
	setDefault(&o.PresenceMaxUsers, DefaultPresenceMaxUsers)
	o.PresenceMaxUsers = min(o.PresenceMaxUsers, MaxPresenceMaxUsers)
	setDefault(&o.PresenceQueueBytes, DefaultPresenceQueueBytes)
	if o.InstanceID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.InstanceID = hex.EncodeToString(b[:])
	}
}

func (o *Options) byteBurst() float64 {
	if o.RateMsgs <= 0 {
		return o.RateBytes
	}
	return o.RateBytes * float64(o.RateBurst) / o.RateMsgs
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Router is the gateway's application layer: auth, rooms, users, channels,
// presence and flow control on top of the engine. It implements
// engine.Handler; see doc.go for who owns what.
type Router struct {
	// Immutable after Bind.
	opts                    Options
	verifier                *auth.Verifier
	eng                     *engine.Engine
	eopts                   engine.Options
	shards                  []*shard
	reg                     registry
	authTicks               uint32
	svcSeq                  atomic.Uint64    // ids for messages from services, which have none
	hist                    History          // history mode (history.go); nil when off
	pres                    *presenceService // replicated presence (presence.go); nil: standalone
	resumes                 []resumeTable    // per loop, owned by that loop: resumes in flight
	upq                     *upstreamQueue   // events and hook requests (events.go); nil when off
	upPrefix                string           // subject prefix of events and hooks
	upConnect, upDisconnect string           // their event subjects, built once
	hookCount               hookCounters     // hook outcomes (hooks.go)
	rq                      Requester        // requests to services (rpc.go); nil: rpc answers unavailable
	ctl                     controlState     // control API (control.go)
}

// New checks opts and builds a router; Bind it to an engine before Start.
func New(opts Options) (*Router, error) {
	opts.normalize()
	v, err := auth.NewVerifier(opts.Auth)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if !wire.ValidName([]byte(opts.InstanceID)) {
		return nil, fmt.Errorf("router: instance id %q: want 1-128 bytes of [A-Za-z0-9_.:-]", opts.InstanceID)
	}
	return &Router{opts: opts, verifier: v}, nil
}

// Bind attaches the router to the engine that serves it (engine.New(..., r)),
// and starts the backplane. Call once, before Engine.Start.
func (r *Router) Bind(e *engine.Engine) error {
	r.eng = e
	r.eopts = e.Options()
	loops := e.Loops()
	r.shards = make([]*shard, len(loops))
	for i, l := range loops {
		r.shards[i] = newShard(l, r)
		l.SetData(r.shards[i])
	}
	r.reg.loops = len(loops)
	r.authTicks = e.Ticks(r.opts.AuthTimeout)
	if err := r.bindHistory(len(loops)); err != nil {
		return err
	}
	r.bindPresence()
	r.bindRPC()
	if err := r.bindUpstream(); err != nil {
		return err
	}
	r.bindControl()
	if bp := r.opts.Backplane; bp != nil {
		host := Host{
			Deliver:   r.fromBackplane,
			HasLocal:  r.reg.hasLocal,
			EachLocal: r.reg.each,
			Resumed:   r.backplaneResumed,
		}
		if err := bp.Start(r.opts.InstanceID, host); err != nil {
			return fmt.Errorf("router: backplane: %w", err)
		}
		r.startPresence()
	}
	return nil
}

// Close detaches from the backplane (after the engine stopped); the
// backplane hands on what it accepted first (bounded by its timeout).
func (r *Router) Close() error {
	if r.upq != nil {
		r.upq.close(5 * time.Second)
	}
	if r.opts.Backplane != nil {
		r.closePresence() // sends the last leaves first (presence.go)
		return r.opts.Backplane.Close()
	}
	return nil
}

// InstanceID is this instance's id.
func (r *Router) InstanceID() string { return r.opts.InstanceID }

// --- engine.Handler ---------------------------------------------------------

// Accept picks the codec and checks a token given on the upgrade request.
func (r *Router) Accept(c *engine.Conn, req *engine.Request) engine.Decision {
	cl := &client{conn: c, authedIdx: -1, shard: c.Loop().Data().(*shard)}
	d := engine.Decision{}
	for _, p := range req.Protocols {
		if codec, ok := wire.ParseCodec(string(p)); ok {
			cl.codec = codec
			d.Protocol = codec.Subprotocol()
			break
		}
	}
	token := req.QueryValue("token")
	if auth := req.Authorization; len(token) == 0 && len(auth) > 7 && bytes.EqualFold(auth[:7], []byte("Bearer ")) {
		token = bytes.TrimSpace(auth[7:])
	}
	if len(token) > 0 {
		g, err := r.verifier.Verify(token)
		if err != nil {
			cl.shard.stats.AuthFailures++
			return engine.Decision{Status: 401, Reason: "invalid token: " + err.Error()}
		}
		cl.setGrant(g)
	}
	c.SetApp(cl)
	return d
}

// OnOpen finishes authentication from the upgrade, or starts the auth timer.
func (r *Router) OnOpen(c *engine.Conn) {
	cl := c.App().(*client)
	if cl.perms != nil {
		r.activate(cl, nil)
		return
	}
	c.RequireAuthWithin(r.authTicks)
}

// OnDrain sends what was held back while the connection was backlogged.
func (r *Router) OnDrain(c *engine.Conn) {
	if cl, ok := c.App().(*client); ok {
		cl.shard.drain(cl)
	}
}

// OnClose removes the connection from every table.
func (r *Router) OnClose(c *engine.Conn, code ws.StatusCode) {
	cl, ok := c.App().(*client)
	if !ok {
		return
	}
	s := cl.shard
	for len(cl.members) > 0 {
		r.leaveAt(cl, len(cl.members)-1, nil)
	}
	if cl.perms != nil && cl.authedIdx >= 0 {
		s.removeAuthed(cl)
		r.event(cl, eventDisconnect, "", int(code))
	}
	cl.releaseHeld()
	if r.hist != nil {
		r.dropResumes(cl)
	}
	if len(cl.rpcs) > 0 {
		s.dropRPCs(cl)
	}
}

// activate makes cl an authenticated, active connection.
func (r *Router) activate(cl *client, clientID []byte) {
	if r.opts.HookConnect && !cl.hookPassed {
		r.askConnectHook(cl, clientID) // admitted once the hook allows (hooks.go)
		return
	}
	s := cl.shard
	cl.conn.SetState(engine.StateActive)
	s.addAuthed(cl)
	r.joinAddr(cl, KindUser, cl.user)
	if r.settleNeededForJoin() {
		r.holdOutput(cl) // auth:ok once the user's subscription is in effect (settle.go)
	}
	s.out = cl.codec.AppendAuthOKExp(s.out[:0], cl.user, strconv.FormatUint(cl.conn.ID(), 36), r.opts.InstanceID, cl.exp, clientID)
	s.write(cl, s.out)
	r.event(cl, eventConnect, "", 0)
	r.armExpiry(cl) // refresh.go
}

// joinAddr adds a membership on the shard and in the registry.
func (r *Router) joinAddr(cl *client, kind Kind, name string) {
	s := cl.shard
	s.join(cl, kind, name)
	firstHere, firstOfUser := r.reg.add(kind, name, s.loop.Index(), cl.user)
	if firstHere && r.opts.Backplane != nil {
		// Level-triggered: the backplane re-reads the registry, so this
		// call racing with a leave on another loop cannot undo it.
		r.opts.Backplane.Interest(kind, name)
	}
	if kind == KindRoom && r.pres != nil {
		r.pres.touch(name, cl.user, cl.conn.ID()) // across instances (presence.go)
	} else if kind == KindRoom && firstOfUser && r.opts.PresenceEvents {
		r.presenceEvent(cl, name, "user:joined")
	}
	if kind == KindRoom {
		r.event(cl, eventJoin, name, 0)
	}
}

// leaveAt removes membership i of cl.
func (r *Router) leaveAt(cl *client, i int, _ []byte) {
	s := cl.shard
	m := cl.members[i]
	s.leave(cl, i)
	lastHere, lastOfUser := r.reg.remove(m.kind, m.name, s.loop.Index(), cl.user)
	if lastHere && r.opts.Backplane != nil {
		r.opts.Backplane.Interest(m.kind, m.name)
	}
	if m.kind == KindRoom && r.pres != nil {
		r.pres.touch(m.name, cl.user, 0)
	} else if m.kind == KindRoom && lastOfUser && r.opts.PresenceEvents {
		r.presenceEvent(cl, m.name, "user:left")
	}
	if m.kind == KindRoom {
		r.event(cl, eventLeave, m.name, 0)
	}
}

// presenceEvent tells the room's other members (all loops) that cl's user
// joined or left, encoded once per codec like any room message
// (standalone; with a backplane the presence service does, presence.go).
func (r *Router) presenceEvent(cl *client, room, typ string) {
	m := newOutMsg()
	m.kind = KindRoom
	m.name = append(m.name, room...)
	m.exclude = cl.conn
	m.presence = typ
	m.from = append(m.from, cl.user...)
	r.route(cl.shard, m)
}

// --- routing ---------------------------------------------------------------

// route fans m out to every loop with local receivers (the caller's loop
// synchronously, the others by one handoff each) and releases the caller's
// reference.
func (r *Router) route(own *shard, m *outMsg) {
	var mask uint64
	if m.kind == KindAll {
		mask = ^uint64(0)
	} else if in := r.reg.lookup(m.kind, m.name); in != nil {
		mask = in.mask.Load()
	}
	cost := m.inboxCost()
	for i, s := range r.shards {
		if mask&loopBit(i) == 0 || s == own {
			continue
		}
		m.retain()
		var ok bool
		if own != nil {
			// On own's loop: batched with the loop's other hand-offs
			// to s, handed over once per iteration.
			ok = own.loop.HandoffBytes(s.loop, engine.Task{Fn: deliverTask, Arg: m}, cost)
		} else {
			ok = s.loop.PostBytes(engine.Task{Fn: deliverTask, Arg: m}, cost)
		}
		if !ok {
			m.release()
			if s.loop.Running() { // a loop that never ran has no receivers
				s.noteDropped(m.kind, m.name, 1, true)
			}
		}
	}
	if own != nil && mask&loopBit(own.loop.Index()) != 0 {
		own.fanOut(m)
	}
	m.release()
}

// fromBackplane delivers a message from another instance (any goroutine).
func (r *Router) fromBackplane(rm *Remote) {
	if rm.Dropped > 0 {
		r.droppedRemote(rm)
		return
	}
	if rm.Origin == r.opts.InstanceID && rm.Seq == 0 {
		return // never our own message twice (history mode: see history.go)
	}
	m := r.outOfRemote(rm)
	if m == nil {
		return
	}
	if rm.Seq != 0 && rm.Origin == r.opts.InstanceID {
		m.excludeID = rm.OriginConn
	}
	r.route(nil, m)
}

// droppedRemote tells the local receivers of rm's address that the
// backplane lost rm.Dropped messages for it (any goroutine): each loop with
// members records them and sends `gap` when it next runs.
func (r *Router) droppedRemote(rm *Remote) {
	var mask uint64
	if rm.Kind == KindAll {
		mask = ^uint64(0)
	} else if in := r.reg.lookup(rm.Kind, []byte(rm.Name)); in != nil {
		mask = in.mask.Load()
	}
	for i, s := range r.shards {
		if mask&loopBit(i) != 0 && s.loop.Running() {
			s.noteDropped(rm.Kind, []byte(rm.Name), rm.Dropped, false)
		}
	}
}

// errNotAuthed is the reply to anything but auth and ping before auth.
var errNotAuthed = &wire.ProtocolError{Code: wire.CodeUnauthorized, Message: "authenticate first"}

// errHookWait answers everything but ping while the connect hook decides.
var errHookWait = &wire.ProtocolError{Code: wire.CodeUnauthorized, Message: "waiting for the connect hook"}

// OnMessage decodes and handles one client message.
func (r *Router) OnMessage(c *engine.Conn, op ws.OpCode, payload []byte) {
	cl, ok := c.App().(*client)
	if !ok {
		return
	}
	s := cl.shard
	e := &s.env
	now := time.Now()
	if !cl.allow(&r.opts, len(payload), now) {
		s.stats.RateLimited++
		cl.violations++
		if r.opts.RateKickAfter > 0 && int(cl.violations) >= r.opts.RateKickAfter {
			s.stats.RateKicks++
			c.Close(engine.ClosePolicy, "rate limit exceeded")
			return
		}
		s.out = cl.codec.AppendError(s.out[:0], wire.CodeRateLimited, "rate limit exceeded", nil)
		s.write(cl, s.out)
		return
	}
	cl.violations = 0
	if (op == ws.OpBinary) != cl.codec.Binary() {
		s.out = cl.codec.AppendError(s.out[:0], wire.CodeBadRequest, "wrong frame type for "+cl.codec.Subprotocol(), nil)
		s.write(cl, s.out)
		return
	}
	err := cl.codec.Decode(payload, e)
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		r.replyError(cl, err, e.ID)
		return
	}
	if cl.perms == nil && e.Type != wire.TypeAuth && e.Type != wire.TypePing {
		r.replyError(cl, errNotAuthed, e.ID)
		return
	}
	if cl.hookWait != 0 && e.Type != wire.TypePing {
		r.replyError(cl, errHookWait, e.ID) // not admitted yet (hooks.go)
		return
	}
	switch e.Type {
	case wire.TypeAuth:
		r.handleAuth(cl, e)
	case wire.TypePing:
		s.out = cl.codec.AppendPong(s.out[:0], now.UnixMilli(), e.ID)
		s.write(cl, s.out)
	case wire.TypeJoin:
		r.handleJoin(cl, e)
	case wire.TypeLeave:
		r.handleLeave(cl, KindRoom, e.Room, "left", "room", e.ID)
	case wire.TypeSubscribe:
		r.handleSubscribe(cl, e)
	case wire.TypeUnsubscribe:
		r.handleLeave(cl, KindChannel, e.Channel, "unsubscribed", "channel", e.ID)
	case wire.TypeMessage:
		if cl.member(KindRoom, e.Room) < 0 {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeNotJoined, Message: "join the room first"}, e.ID)
			return
		}
		if r.hist != nil {
			r.publishStored(cl, e, now) // acks once stored (history.go)
			return
		}
		r.publish(cl, e, KindRoom, e.Room, now, false, 0)
	case wire.TypePublish:
		if !cl.perms.MayPublish(e.Channel) {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: "may not publish to this channel"}, e.ID)
			return
		}
		r.publish(cl, e, KindChannel, e.Channel, now, false, 0)
	case wire.TypeSend:
		delivered := r.reg.count(KindUser, e.To)
		if delivered > 0 && string(e.To) == cl.user {
			delivered-- // the sender's own connection is skipped
		}
		r.publish(cl, e, KindUser, e.To, now, true, delivered)
	case wire.TypePresence:
		if cl.member(KindRoom, e.Room) < 0 && !cl.perms.MayJoin(e.Room) {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: "may not see this room"}, e.ID)
			return
		}
		if r.pres != nil {
			r.askPresence(cl, e) // across instances (presence.go)
			return
		}
		r.localPresence(cl, e)
	case wire.TypeRefresh:
		r.handleRefresh(cl, e) // refresh.go
	case wire.TypeResume:
		if r.hist == nil {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "history is off (-history)"}, e.ID)
			return
		}
		r.handleResume(cl, e)
	case wire.TypeRPC:
		r.handleRPC(cl, e, now) // rpc.go
	}
}

func (r *Router) handleAuth(cl *client, e *wire.Envelope) {
	s := cl.shard
	if cl.perms != nil {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "already authenticated"}, e.ID)
		return
	}
	g, err := r.verifier.Verify(e.Token)
	if err != nil {
		s.stats.AuthFailures++
		s.out = cl.codec.AppendAuthFail(s.out[:0], err.Error())
		s.write(cl, s.out)
		cl.conn.Close(engine.CloseAuthFailed, "authentication failed")
		return
	}
	cl.setGrant(g)
	r.activate(cl, e.ID)
}

func (r *Router) handleJoin(cl *client, e *wire.Envelope) {
	if r.opts.HookJoin != nil && cl.member(KindRoom, e.Room) < 0 && cl.perms.MayJoin(e.Room) && r.joinHookFor(e.Room) {
		r.askJoinHook(cl, e) // joined once the hook allows (hooks.go)
		return
	}
	r.addMembership(cl, e.ID, KindRoom, e.Room, cl.perms.MayJoin(e.Room), "may not join this room", "joined", "room")
}

func (r *Router) handleSubscribe(cl *client, e *wire.Envelope) {
	r.addMembership(cl, e.ID, KindChannel, e.Channel, cl.perms.MaySubscribe(e.Channel), "may not subscribe to this channel", "subscribed", "channel")
}

// addMembership joins a room or subscribes a channel after the permission
// and limit checks, and replies. Doing it twice is harmless: the second time
// answers as if it were the first.
func (r *Router) addMembership(cl *client, id []byte, kind Kind, name []byte, allowed bool, forbidden, reply, key string) {
	s := cl.shard
	switch {
	case !allowed:
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: forbidden}, id)
		return
	case cl.member(kind, name) >= 0:
	case len(cl.members) > r.opts.MaxSubscriptions:
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeForbidden, Message: "too many rooms and channels"}, id)
		return
	default:
		r.joinAddr(cl, kind, string(name))
		if r.settleNeededForJoin() {
			r.holdOutput(cl) // the reply once the subscription is in effect (settle.go)
		}
	}
	s.out = cl.codec.AppendSimple(s.out[:0], reply, key, name, id)
	s.write(cl, s.out)
}

func (r *Router) handleLeave(cl *client, kind Kind, name []byte, reply, key string, id []byte) {
	s := cl.shard
	i := cl.member(kind, name)
	if i < 0 {
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeNotJoined, Message: "not a member"}, id)
		return
	}
	r.leaveAt(cl, i, id)
	s.out = cl.codec.AppendSimple(s.out[:0], reply, key, name, id)
	s.write(cl, s.out)
}

// publish stamps a client message, routes it locally and to the backplane,
// and answers: an error when it could not, else the ack (the send ack with
// delivered when send is set). With a backplane the ack waits for the
// backplane's confirmation (confirm.go); standalone it goes at once.
func (r *Router) publish(cl *client, e *wire.Envelope, kind Kind, name []byte, now time.Time, send bool, delivered int) {
	s := cl.shard
	m := newOutMsg()
	m.kind = kind
	m.priority = e.Priority
	if kind != KindChannel {
		// A room message skips the sender's own connection (PROTOCOL.md
		// section 3), and so does a send to oneself; a channel publish goes
		// to every subscriber, the publisher's connection included.
		m.exclude = cl.conn
	}
	m.dataCodec = cl.codec
	m.name = append(m.name, name...)
	m.from = append(m.from, cl.user...)
	m.data = append(m.data, e.Data...)
	m.ts = now.UnixMilli()
	s.msgSeq++
	m.id = r.appendMessageID(m.id, s)
	if len(e.Filter) > 0 {
		f, err := wire.ParseFilter(e.Filter, cl.codec)
		if err != nil {
			m.release()
			r.replyError(cl, err, e.ID)
			return
		}
		m.filter = f
	}
	bp := r.opts.Backplane
	if bp != nil {
		if err := r.toBackplane(bp, m, e.Filter, cl.codec, &s.acks); err != nil {
			m.release()
			var pe *wire.ProtocolError
			if !errors.As(err, &pe) {
				s.stats.BackplaneErrors++
				pe = errBackplaneUnavailable
			}
			r.replyError(cl, pe, e.ID)
			return
		}
		s.acks.push(cl, e.ID, m.id, send, delivered)
	}
	// route releases the caller's reference; the ack below still needs m.id
	// (its mid), so hold one more until it is written.
	m.retain()
	r.route(s, m)
	switch {
	case bp != nil || len(e.ID) == 0:
	case send:
		s.out = cl.codec.AppendSendAck(s.out[:0], e.ID, m.id, delivered, false)
		s.write(cl, s.out)
	default:
		r.replyAck(cl, e.ID, m.id, 0)
	}
	m.release()
}

// toBackplane publishes m for the other instances, in JSON; acks is told
// its fate.
func (r *Router) toBackplane(bp Backplane, m *outMsg, filter []byte, codec wire.Codec, acks *ackQueue) error {
	rm := &Remote{Kind: m.kind, Name: string(m.name), From: string(m.from), ID: string(m.id), TS: m.ts, Priority: m.priority, Origin: r.opts.InstanceID, Data: m.data, Filter: filter,
		Confirm: acks, ConfirmSeq: acks.next()}
	if codec != wire.CodecJSON {
		var err error
		if rm.Data, err = wire.Transcode(nil, m.data, codec, wire.CodecJSON); err != nil {
			return &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "data has no JSON form: " + protocolMessage(err)}
		}
		if len(filter) > 0 {
			if rm.Filter, err = wire.Transcode(nil, filter, codec, wire.CodecJSON); err != nil {
				return &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "filter has no JSON form: " + protocolMessage(err)}
			}
		}
	}
	return bp.Publish(rm)
}

// appendMessageID appends "<instance>-<loop>-<counter>": unique across
// instances (instance ids are) and loops, without coordination.
func (r *Router) appendMessageID(dst []byte, s *shard) []byte {
	dst = append(dst, r.opts.InstanceID...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(s.loop.Index()), 36)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, s.msgSeq, 36)
}

// appendServiceID stamps a message that came without an id (from a service).
func (r *Router) appendServiceID(dst []byte) []byte {
	dst = append(dst, r.opts.InstanceID...)
	dst = append(dst, "-s-"...)
	return strconv.AppendUint(dst, r.svcSeq.Add(1), 36)
}

// Ready reports whether the router can route beyond this instance: true
// standalone, else whatever the backplane says (an optional Ready method).
func (r *Router) Ready() bool {
	if rd, ok := r.opts.Backplane.(interface{ Ready() bool }); ok {
		return rd.Ready()
	}
	return true
}

// PublishService delivers a message from a service (POST /api/publish) to
// local receivers and, through the backplane, to every other instance. data
// is raw JSON. With a backplane it returns once the backplane confirmed the
// message (or failed it: ErrUnavailable), so it blocks for up to the
// backplane's confirm timeout: call it from any goroutine but an event loop.
func (r *Router) PublishService(kind Kind, name string, data []byte, from string, priority wire.Priority, filter []byte) error {
	if kind != KindAll && !wire.ValidName([]byte(name)) {
		return fmt.Errorf("router: bad %s name %q", kind, name)
	}
	if !wire.ValidJSON(data) {
		return errors.New("router: data is not valid JSON")
	}
	m := newOutMsg()
	m.kind, m.priority, m.dataCodec, m.ts = kind, priority, wire.CodecJSON, time.Now().UnixMilli()
	m.name = append(m.name, name...)
	m.from = append(m.from, from...)
	m.data = append(m.data, data...)
	m.id = r.appendServiceID(m.id)
	if len(filter) > 0 {
		f, err := wire.ParseFilter(filter, wire.CodecJSON)
		if err != nil {
			m.release()
			return fmt.Errorf("router: filter: %w", err)
		}
		m.filter = f
	}
	if kind == KindRoom && r.hist != nil {
		m.release()
		return r.publishServiceStored(name, data, from, priority, filter)
	}
	if bp := r.opts.Backplane; bp != nil {
		done := make(waitConfirm, 1)
		rm := &Remote{Kind: kind, Name: name, From: from, Data: data, ID: string(m.id), TS: m.ts, Priority: priority, Filter: filter, Origin: r.opts.InstanceID,
			Confirm: done, ConfirmSeq: 1}
		if err := bp.Publish(rm); err != nil {
			m.release()
			return err
		}
		r.route(nil, m)
		if err := <-done; err != nil {
			return ErrUnavailable // not confirmed (callers compare with ==)
		}
		return nil
	}
	r.route(nil, m)
	return nil
}

// replyAck answers a message or publish: mid is the gateway message id the
// receivers see, seq its history sequence (0 = none).
func (r *Router) replyAck(cl *client, id, mid []byte, seq uint64) {
	if len(id) == 0 {
		return
	}
	s := cl.shard
	s.out = cl.codec.AppendAck(s.out[:0], id, mid, seq)
	s.write(cl, s.out)
}

func (r *Router) replyError(cl *client, err error, id []byte) {
	s := cl.shard
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) {
		pe = &wire.ProtocolError{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	s.out = cl.codec.AppendProtocolError(s.out[:0], pe, id)
	s.write(cl, s.out)
}

var _ engine.Handler = (*Router)(nil)

// protocolMessage is an error's client-facing text, without its code.
func protocolMessage(err error) string {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}
