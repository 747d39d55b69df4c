package natsbp

// # Requests to services (router/rpc.go, PROTOCOL.md section 10)
//
// A client's `rpc` becomes a NATS request on <p>.rpc.<method>. No goroutine
// per request and no nats.go request call (its response multiplexer waits):
//
//   - Event loops call Request, which only enqueues (a bounded channel);
//     nothing they call takes nats.go's connection lock.
//   - The rpc sender goroutine publishes each request with its reply
//     subject set to <inbox>.<token>, where <inbox> is one inbox of this
//     connection (nats.NewInbox) and the token (base 36) names the event
//     loop and the request there.
//   - One subscription, <inbox>.*, takes every reply; its handler hands
//     the reply to the router (router.Requester.ServeReplies), which posts
//     it to the owning loop. A NATS "503 no responders" status on the inbox
//     (the server sends it when nothing is subscribed to the subject) is
//     the `unavailable` answer.
//
// Timeouts are the router's (a per-loop sweep); a reply that comes after
// its request timed out or its connection closed is dropped there.

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// rpcQueue bounds the requests waiting for the sender goroutine; past it
// Request fails (`error unavailable`) rather than waiting.
const rpcQueue = 8192

// RPC header names (PROTOCOL.md section 10).
const (
	HeaderUser     = "Wsgate-User"
	HeaderConn     = "Wsgate-Conn"
	HeaderInstance = "Wsgate-Instance"
	HeaderError    = "Wsgate-Error"
)

// RPCStats are the backplane's request counters.
type RPCStats struct {
	// Sent requests, SendErrors requests that could not be sent (queue
	// full, NATS down), Replies every reply taken from the inbox (no
	// responders included), NoResponders the 503 statuses among them.
	Sent, SendErrors, Replies, NoResponders uint64
}

type rpcSender struct {
	b       *Backplane
	subject string // <p>.rpc.
	inbox   string // this connection's reply prefix, ending in "."
	q       chan *router.RPCRequest
	reply   func(token uint64, rep router.RPCReply)

	sent, sendErrors, replies, noResponders atomic.Uint64
}

var _ router.Requester = (*Backplane)(nil)

// ServeReplies sets where replies go (router.Requester; before Start).
func (b *Backplane) ServeReplies(reply func(token uint64, rep router.RPCReply)) { b.rpcReply = reply }

// RPCStats returns the request counters.
func (b *Backplane) RPCStats() RPCStats {
	s := b.rpc
	if s == nil {
		return RPCStats{}
	}
	return RPCStats{Sent: s.sent.Load(), SendErrors: s.sendErrors.Load(), Replies: s.replies.Load(), NoResponders: s.noResponders.Load()}
}

// startRPC subscribes the reply inbox and starts the sender (from Start).
func (b *Backplane) startRPC() error {
	if b.rpcReply == nil {
		return nil // the router does not serve rpc
	}
	s := &rpcSender{b: b, subject: b.opts.Prefix + ".rpc.", inbox: nats.NewInbox() + ".",
		q: make(chan *router.RPCRequest, rpcQueue), reply: b.rpcReply}
	if _, err := b.nc.Subscribe(s.inbox+"*", s.collect); err != nil {
		return fmt.Errorf("natsbp: rpc inbox: %w", err)
	}
	b.rpc = s
	b.wg.Add(1)
	go s.sender()
	return nil
}

// Request queues req for the sender goroutine (router.Requester). It fails
// at once with router.ErrUnavailable when NATS is down or the queue full.
func (b *Backplane) Request(req *router.RPCRequest) error {
	s := b.rpc
	if s == nil || !b.ready.Load() {
		if s != nil {
			s.sendErrors.Add(1)
		}
		return router.ErrUnavailable
	}
	select {
	case s.q <- req:
		return nil
	default:
		s.sendErrors.Add(1)
		return router.ErrUnavailable
	}
}

// sender publishes queued requests until the backplane closes. A request
// that cannot be published is answered unavailable at once. It reuses one
// nats.Msg and its header: PublishMsg encodes the message into the
// connection's buffer before it returns, so nothing of m is kept.
func (s *rpcSender) sender() {
	defer s.b.wg.Done()
	user, conn := []string{""}, []string{""}
	m := &nats.Msg{Header: nats.Header{
		HeaderUser:     user,
		HeaderConn:     conn,
		HeaderInstance: []string{s.b.instance},
	}}
	for {
		select {
		case <-s.b.done:
			return
		case req := <-s.q:
			m.Subject = s.subject + req.Method
			m.Reply = s.inbox + strconv.FormatUint(req.Token, 36)
			user[0], conn[0] = req.User, req.Conn
			m.Data = req.Body
			err := s.b.nc.PublishMsg(m)
			m.Data = nil // the body is the request's; do not hold it until the next one
			if err != nil {
				s.sendErrors.Add(1)
				s.reply(req.Token, router.RPCReply{Unavailable: true})
				continue
			}
			s.sent.Add(1)
		}
	}
}

// collect hands one reply to the router (nats.go's subscription goroutine).
func (s *rpcSender) collect(m *nats.Msg) {
	token, err := strconv.ParseUint(m.Subject[len(s.inbox):], 36, 64)
	if err != nil {
		s.b.decodeErrors.Add(1)
		return
	}
	s.replies.Add(1)
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		// 503: no responders. Any other status on a plain reply inbox is
		// no answer from a service either.
		s.noResponders.Add(1)
		s.reply(token, router.RPCReply{Unavailable: true})
		return
	}
	rep := router.RPCReply{Data: m.Data}
	if vals, ok := m.Header[HeaderError]; ok {
		rep.HasError = true
		if len(vals) > 0 {
			rep.Error = vals[0]
		}
	}
	s.reply(token, rep)
}
