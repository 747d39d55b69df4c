package router

// Requests to services (PROTOCOL.md section 10, `rpc`).
//
// A client's {"type":"rpc","method":M,"data":D,"id":I} becomes a request to
// the backplane (Requester; NATS: <p>.rpc.M, natsbp/rpc.go) with D as JSON
// whatever the client's encoding. Nothing waits:
//
//   - On the connection's loop, handleRPC checks the claim `rpc`, the
//     connection's limit of requests in flight (RPCMaxInFlight), gives the
//     request a token (the loop's index in the top 16 bits, a per-loop
//     sequence below), records it in the loop's table (shard.rpc) and hands
//     it to Requester.Request, which only enqueues.
//   - The backplane's single reply subscription calls rpcReply with the
//     token on its own goroutine; rpcReply posts the reply to the loop the
//     token names (engine.Loop.PostBytes, bounded by bytes like every
//     delivery).
//   - On the loop, rpcReplyTask finds the request by token (gone: it timed
//     out or its connection closed; the reply is dropped and counted as
//     late) and writes the answer in the client's encoding.
//   - Timeouts: every request of a router has the same timeout, so the
//     loop's requests expire in the order they were made; a FIFO of
//     (deadline, token) swept at each engine tick (OnTick) finds the due
//     ones in O(due). The answer comes between RPCTimeout and RPCTimeout
//     plus one tick (-tick-interval) after the request.
//   - A closing connection drops its requests from the table (OnClose);
//     their FIFO entries stay until their deadline and are then skipped.

import (
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// RPCRequest is one client request to a service, handed to Requester.Request.
type RPCRequest struct {
	Method string // the method name (a wire name), after the subject prefix
	Token  uint64 // returned with the reply
	User   string // Wsgate-User
	Conn   string // Wsgate-Conn: the connection id as auth:ok gave it
	Body   []byte // the request data as JSON; owned by the Requester
}

// RPCReply is a service's answer to an RPCRequest, or the lack of one.
type RPCReply struct {
	// Data is the reply body: JSON, or the error message when HasError.
	// The router keeps it (the backplane must not reuse it).
	Data []byte
	// HasError says the reply carried the Wsgate-Error header, whose value
	// is Error.
	HasError bool
	Error    string
	// Unavailable says no service could take the request (no responders,
	// or it could not be sent).
	Unavailable bool
}

// RPC outcomes, the label of the rpc request counter.
const (
	RPCOutcomeOK           = iota // rpc:result
	RPCOutcomeServiceError        // the service answered with Wsgate-Error
	RPCOutcomeTimeout             // no answer within Options.RPCTimeout
	RPCOutcomeUnavailable         // no responder, backplane down, or standalone
	RPCOutcomeForbidden           // the claim `rpc` does not allow the method
	RPCOutcomeRateLimited         // more than RPCMaxInFlight in flight
	RPCOutcomeBadReply            // the reply was not JSON, or too large to send
	rpcOutcomes
)

// RPCOutcomeNames are the metric labels of the outcomes, by index.
var RPCOutcomeNames = [rpcOutcomes]string{"ok", "service_error", "timeout", "unavailable", "forbidden", "rate_limited", "bad_reply"}

// RPCStats are one loop's rpc counters.
type RPCStats struct {
	Outcomes [rpcOutcomes]uint64
	// Late counts replies that came after their request timed out or its
	// connection closed (dropped).
	Late uint64
	// InFlight is the number of requests in the loop's table now.
	InFlight int
	// Latency is the time from the request to its answer (rpc:result or
	// service_error; not timeouts), every request.
	Latency LatencyHistogram
}

// Add folds o into s.
func (s *RPCStats) Add(o *RPCStats) {
	for i := range s.Outcomes {
		s.Outcomes[i] += o.Outcomes[i]
	}
	s.Late += o.Late
	s.InFlight += o.InFlight
	s.Latency.Add(&o.Latency)
}

// rpcCall is one request in flight.
type rpcCall struct {
	cl     *client
	id     []byte // the client's id, echoed in the answer
	method string
	born   int64 // monoNow at the request
}

type rpcDeadline struct {
	at    int64 // monoNow
	token uint64
}

// rpcTable is one loop's requests in flight. Owned by the loop.
type rpcTable struct {
	calls map[uint64]*rpcCall
	fifo  []rpcDeadline // in request order, which is deadline order
	head  int           // fifo[:head] are done
	seq   uint64
	free  []*rpcCall // recycled calls
	stats RPCStats
}

// rpcLoopShift puts the loop index in a token's top bits.
const rpcLoopShift = 48

func (t *rpcTable) statsCopy() RPCStats {
	st := t.stats
	st.InFlight = len(t.calls)
	return st
}

// bindRPC wires the router to a backplane that can send requests.
func (r *Router) bindRPC() {
	rq, ok := r.opts.Backplane.(Requester)
	if !ok {
		return
	}
	rq.ServeReplies(r.rpcReply)
	r.rq = rq
}

var (
	errRPCStandalone = &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "rpc needs the NATS backplane"}
	errRPCBackplane  = &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "backplane unavailable"}
	errRPCForbidden  = &wire.ProtocolError{Code: wire.CodeForbidden, Message: "may not call this method"}
)

// handleRPC starts a client's request (on its loop).
func (r *Router) handleRPC(cl *client, e *wire.Envelope, now time.Time) {
	s := cl.shard
	t := &s.rpc
	switch {
	case !cl.perms.MayRPC(e.Method):
		t.stats.Outcomes[RPCOutcomeForbidden]++
		r.replyError(cl, errRPCForbidden, e.ID)
		return
	case r.rq == nil:
		t.stats.Outcomes[RPCOutcomeUnavailable]++
		r.replyError(cl, errRPCStandalone, e.ID)
		return
	case len(cl.rpcs) >= r.opts.RPCMaxInFlight:
		t.stats.Outcomes[RPCOutcomeRateLimited]++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeRateLimited,
			Message: "more than " + strconv.Itoa(r.opts.RPCMaxInFlight) + " rpc requests in flight"}, e.ID)
		return
	}
	var body []byte
	switch {
	case e.Data == nil:
		body = []byte("null")
	case cl.codec == wire.CodecJSON:
		body = append([]byte(nil), e.Data...)
	default:
		var err error
		if body, err = wire.Transcode(nil, e.Data, cl.codec, wire.CodecJSON); err != nil {
			r.replyError(cl, &wire.ProtocolError{Code: wire.CodeBadRequest, Message: "data has no JSON form: " + protocolMessage(err)}, e.ID)
			return
		}
	}
	t.seq++
	token := uint64(s.loop.Index())<<rpcLoopShift | t.seq&(1<<rpcLoopShift-1)
	req := &RPCRequest{Method: string(e.Method), Token: token, User: cl.user, Conn: strconv.FormatUint(cl.conn.ID(), 36), Body: body}
	if err := r.rq.Request(req); err != nil {
		t.stats.Outcomes[RPCOutcomeUnavailable]++
		s.stats.BackplaneErrors++
		r.replyError(cl, errRPCBackplane, e.ID)
		return
	}
	c := t.get()
	c.cl, c.method, c.born = cl, req.Method, monoNow()
	c.id = append(c.id[:0], e.ID...)
	if t.calls == nil {
		t.calls = map[uint64]*rpcCall{}
	}
	t.calls[token] = c
	t.fifo = append(t.fifo, rpcDeadline{at: c.born + int64(r.opts.RPCTimeout), token: token})
	cl.rpcs = append(cl.rpcs, token)
}

func (t *rpcTable) get() *rpcCall {
	if n := len(t.free); n > 0 {
		c := t.free[n-1]
		t.free = t.free[:n-1]
		return c
	}
	return &rpcCall{}
}

// maxFreeCalls bounds the recycled calls kept per loop.
const maxFreeCalls = 1024

// finish removes the call of token from the table and from its client.
func (t *rpcTable) finish(token uint64, c *rpcCall) {
	delete(t.calls, token)
	cl := c.cl
	for i, tk := range cl.rpcs {
		if tk == token {
			last := len(cl.rpcs) - 1
			cl.rpcs[i] = cl.rpcs[last]
			cl.rpcs = cl.rpcs[:last]
			break
		}
	}
}

func (t *rpcTable) recycle(c *rpcCall) {
	c.cl = nil
	if len(t.free) < maxFreeCalls && cap(c.id) <= wire.MaxClientIDLen {
		t.free = append(t.free, c)
	}
}

// dropRPCs forgets a closing connection's requests (OnClose).
func (s *shard) dropRPCs(cl *client) {
	t := &s.rpc
	for _, token := range cl.rpcs {
		if c := t.calls[token]; c != nil {
			delete(t.calls, token)
			t.recycle(c)
		}
	}
	cl.rpcs = cl.rpcs[:0]
}

// sweepRPC answers the requests whose deadline passed (OnTick).
func (s *shard) sweepRPC() {
	t := &s.rpc
	if t.head == len(t.fifo) {
		t.fifo, t.head = t.fifo[:0], 0
		return
	}
	now := monoNow()
	for t.head < len(t.fifo) && t.fifo[t.head].at <= now {
		token := t.fifo[t.head].token
		t.fifo[t.head] = rpcDeadline{}
		t.head++
		c := t.calls[token]
		if c == nil {
			continue // answered, or its connection closed
		}
		t.finish(token, c)
		t.stats.Outcomes[RPCOutcomeTimeout]++
		if c.cl.conn.State() < engine.StateClosing {
			s.r.replyError(c.cl, &wire.ProtocolError{Code: wire.CodeTimeout,
				Message: "no answer from " + c.method + " within " + s.r.opts.RPCTimeout.String()}, c.id)
		}
		t.recycle(c)
	}
	// Reuse the FIFO's front once most of it is done.
	if t.head > 256 && t.head > len(t.fifo)/2 {
		n := copy(t.fifo, t.fifo[t.head:])
		t.fifo, t.head = t.fifo[:n], 0
	}
}

type rpcAnswer struct {
	token uint64
	rep   RPCReply
}

// rpcReply takes a reply from the backplane (any goroutine) to the loop
// its token names. A reply the loop's inbox refuses (its byte budget is
// spent) is lost, and the request times out.
func (r *Router) rpcReply(token uint64, rep RPCReply) {
	idx := int(token >> rpcLoopShift)
	if idx >= len(r.shards) {
		return
	}
	r.shards[idx].loop.PostBytes(engine.Task{Fn: rpcReplyTask, Arg: &rpcAnswer{token: token, rep: rep}}, len(rep.Data))
}

func rpcReplyTask(l *engine.Loop, arg any) {
	a := arg.(*rpcAnswer)
	s := l.Data().(*shard)
	t := &s.rpc
	c := t.calls[a.token]
	if c == nil {
		t.stats.Late++
		return
	}
	t.finish(a.token, c)
	defer t.recycle(c)
	cl := c.cl
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	s.answerRPC(c, &a.rep)
}

// answerRPC writes a service's answer to the client, in its encoding.
func (s *shard) answerRPC(c *rpcCall, rep *RPCReply) {
	cl, t, r := c.cl, &s.rpc, s.r
	switch {
	case rep.Unavailable:
		t.stats.Outcomes[RPCOutcomeUnavailable]++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "no service answers " + c.method}, c.id)
		return
	case rep.HasError:
		t.stats.Latency.observe(monoNow() - c.born)
		reason, outcome := rep.Error, RPCOutcomeServiceError
		if !validErrorCode(reason) {
			reason, outcome = RPCReasonBadReply, RPCOutcomeBadReply
		}
		s.out = cl.codec.AppendServiceError(s.out[:0], reason, strings.ToValidUTF8(string(rep.Data), "\uFFFD"), c.id)
		if s.writeRPC(cl, c) {
			t.stats.Outcomes[outcome]++
		}
		return
	}
	t.stats.Latency.observe(monoNow() - c.born)
	data := rep.Data
	if len(data) == 0 {
		data = nullJSON
	}
	if !wire.ValidJSON(data) {
		t.stats.Outcomes[RPCOutcomeBadReply]++
		s.out = cl.codec.AppendServiceError(s.out[:0], RPCReasonBadReply, "the service's reply is not valid JSON", c.id)
		s.write(cl, s.out)
		return
	}
	if cl.codec != wire.CodecJSON {
		var err error
		if s.tmp, err = wire.Transcode(s.tmp[:0], data, wire.CodecJSON, cl.codec); err != nil {
			t.stats.Outcomes[RPCOutcomeBadReply]++
			s.out = cl.codec.AppendServiceError(s.out[:0], RPCReasonBadReply, "the service's reply has no "+cl.codec.Subprotocol()+" form: "+protocolMessage(err), c.id)
			s.write(cl, s.out)
			return
		}
		data = s.tmp
	}
	s.out = cl.codec.AppendRPCResult(s.out[:0], c.id, data)
	if s.writeRPC(cl, c) {
		t.stats.Outcomes[RPCOutcomeOK]++
	}
}

// RPCReasonBadReply is the reason of the service_error the gateway itself
// gives when a service's reply cannot be passed on: not JSON, no form in
// the client's encoding, or a Wsgate-Error value that is no error code.
const RPCReasonBadReply = "bad_reply"

var nullJSON = []byte("null")

// writeRPC writes the answer in s.out unless it is larger than the
// connection's message limit (-max-message-size), which the client could
// not take in: then it answers `error too_large` (counted as bad_reply).
func (s *shard) writeRPC(cl *client, c *rpcCall) bool {
	if limit := s.r.eopts.MaxMessageSize; limit > 0 && len(s.out) > limit {
		s.rpc.stats.Outcomes[RPCOutcomeBadReply]++
		s.out = cl.codec.AppendError(s.out[:0], wire.CodeTooLarge,
			"the service's reply of "+strconv.Itoa(len(s.out))+" bytes is over the "+strconv.Itoa(limit)+"-byte message limit", c.id)
		s.write(cl, s.out)
		return false
	}
	s.write(cl, s.out)
	return true
}

// validErrorCode reports whether v is a Wsgate-Error code: 1-64 bytes of
// [a-z0-9_].
func validErrorCode(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
