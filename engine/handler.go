package engine

import (
	"github.com/gobwas/ws"
)

// Handler is the application seam: echo mode, raw broadcast and the router
// implement it. Every method is called on the connection's event loop, so a
// handler may touch the connection and that loop's state without locks, and
// must never block.
type Handler interface {
	// Accept decides a complete, well-formed upgrade request. It may refuse
	// it with an HTTP status (401, 403, ...), pick a subprotocol from
	// req.Protocols, and attach per-connection state with c.SetApp.
	// req and its byte slices are valid only during the call.
	Accept(c *Conn, req *Request) Decision
	// OnOpen runs right after the 101 response was queued.
	OnOpen(c *Conn)
	// OnMessage delivers one whole text or binary message. payload is valid
	// only during the call (it may point into the loop's read buffer).
	OnMessage(c *Conn, op ws.OpCode, payload []byte)
	// OnDrain runs when a connection that went above the write high-water
	// mark has drained below the low-water mark.
	OnDrain(c *Conn)
	// OnClose runs once per upgraded connection, after it left the loop's
	// tables; code is the close code sent or received (1006 when the TCP
	// connection just went away).
	OnClose(c *Conn, code ws.StatusCode)
}

// TickHandler is an optional extension of Handler: OnTick runs on each loop
// at every tick (-tick-interval), after the engine published its own
// counters, so a handler can publish loop-owned state for readers that must
// not wait on a busy loop (CollectOrLast). It must be cheap.
type TickHandler interface {
	OnTick(l *Loop)
}

// CloseHolder is an optional Handler ability: to finish what is already on
// its way to a connection before answering the client's close frame. A
// client that closes reads until our close frame, so everything written
// before it still reaches the client (a user switching connections counts
// on the old one until the switch: router.Router.HoldClose).
type CloseHolder interface {
	// HoldClose runs when a client's close frame arrives. Returning true
	// holds back the answer: the connection stays open for writes (its
	// state does not change; data messages from the client are discarded)
	// until the handler calls c.AnswerClose on the loop. Returning false
	// answers at once.
	HoldClose(c *Conn) bool
}

// Decision is a Handler's answer to an upgrade request.
type Decision struct {
	// Status refuses the upgrade with this HTTP status when non-zero.
	Status int
	// Reason is the body of a refusal.
	Reason string
	// Protocol is the chosen subprotocol, "" for none.
	Protocol string
}

// Request is what the engine parsed from an upgrade request.
type Request struct {
	Path          []byte // without the query
	Query         []byte // raw, without '?'
	Host          []byte
	Origin        []byte
	Authorization []byte
	Protocols     [][]byte // offered subprotocols in client order
	RemoteAddr    string
}

// QueryValue returns the raw value of query parameter name ("" when absent).
// Values are not percent-decoded: tokens and ids are URL-safe by contract.
func (r *Request) QueryValue(name string) []byte {
	q := r.Query
	for len(q) > 0 {
		var pair []byte
		if i := indexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			return pair[len(name)+1:]
		}
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// BaseHandler has no-op methods to embed.
type BaseHandler struct{}

func (BaseHandler) Accept(*Conn, *Request) Decision    { return Decision{} }
func (BaseHandler) OnOpen(*Conn)                       {}
func (BaseHandler) OnMessage(*Conn, ws.OpCode, []byte) {}
func (BaseHandler) OnDrain(*Conn)                      {}
func (BaseHandler) OnClose(*Conn, ws.StatusCode)       {}
