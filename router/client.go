package router

import (
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/frame"
	"github.com/wsgate/wsgate/wire"
)

// client is the router's state for one connection, attached with
// engine.Conn.SetApp. Owned by the connection's event loop.
type client struct {
	// Fields are ordered by size so the struct packs into 192 bytes (one
	// allocation per connection; docs/architecture.md "What a connection
	// costs" counts it); counters that never need 64 bits are int32.
	conn  *engine.Conn
	shard *shard
	// The verified token (auth.Grant taken apart, set by setGrant): perms
	// is the token's permission claims, shared with every connection whose
	// token carries the same ones (nil until a token verified), user its
	// sub, exp its exp in UNIX seconds (0: none), admin its admin claim.
	perms   *auth.Permissions
	user    string
	members []membership // rooms, channels and the user entry

	// Outbound flow control.
	held []*frame.Shared // normal-priority frames held while backlogged; nil when empty (drain)

	// rpcs are the tokens of this connection's rpc requests in flight
	// (rpc.go), at most Options.RPCMaxInFlight.
	rpcs []uint64

	// Token buckets (PROTOCOL.md section 8), refilled lazily on each message.
	msgTokens  float64
	byteTokens float64
	lastRefill int64 // unix nanos

	heldBytes int
	dropped   uint64 // low-priority messages dropped since the last gap message
	exp       int64  // token's exp, UNIX seconds; 0 when it has none (refresh.go)
	// Hooks (hooks.go): hookWait is the connect hook's request token while
	// the connection waits to be admitted; hookPassed says the hook allowed
	// it; hookJoins counts join hooks in flight.
	hookWait uint64

	// settling counts settle rounds in flight for new memberships: while
	// it is above 0, everything written to the connection waits in held
	// (settle.go).
	settling   int32
	violations int32
	hookJoins  int32
	authedIdx  int32
	// heldReplies counts the replies among held (written while settling),
	// which are not deliveries.
	heldReplies int32
	codec       wire.Codec
	// tokenExpired: token_expired was sent; the app deadline is the 4011
	// close unless a refresh comes (refresh.go).
	tokenExpired bool
	hookPassed   bool
	admin        bool // the token's admin claim, for the connect hook
}

// setGrant keeps what a verified token grants cl: its sub, expiry and
// admin flag inline, its permissions as the shared pointer.
func (cl *client) setGrant(g auth.Grant) {
	cl.perms, cl.user, cl.exp, cl.admin = g.Perms, g.Sub, g.Exp, g.Admin
}

// grant is cl's token as setGrant kept it; Perms is nil until a token
// verified.
func (cl *client) grant() auth.Grant {
	return auth.Grant{Sub: cl.user, Perms: cl.perms, Exp: cl.exp, Admin: cl.admin}
}

// inRoom reports whether cl joined room.
func (cl *client) member(kind Kind, name []byte) int {
	for i := range cl.members {
		if cl.members[i].kind == kind && cl.members[i].name == string(name) {
			return i
		}
	}
	return -1
}

// allow takes one message of size bytes from the buckets.
func (cl *client) allow(o *Options, size int, now time.Time) bool {
	if o.RateMsgs <= 0 {
		return true
	}
	ns := now.UnixNano()
	if cl.lastRefill == 0 {
		cl.msgTokens = float64(o.RateBurst)
		cl.byteTokens = o.byteBurst()
	} else if dt := float64(ns-cl.lastRefill) / 1e9; dt > 0 {
		cl.msgTokens = min(cl.msgTokens+dt*o.RateMsgs, float64(o.RateBurst))
		if o.RateBytes > 0 {
			cl.byteTokens = min(cl.byteTokens+dt*o.RateBytes, o.byteBurst())
		}
	}
	cl.lastRefill = ns
	if cl.msgTokens < 1 || (o.RateBytes > 0 && cl.byteTokens < float64(size)) {
		return false
	}
	cl.msgTokens--
	if o.RateBytes > 0 {
		cl.byteTokens -= float64(size)
	}
	return true
}

// releaseHeld drops every held frame (on close).
func (cl *client) releaseHeld() {
	for i, s := range cl.held {
		s.Release()
		cl.held[i] = nil
	}
	cl.held = cl.held[:0]
	cl.heldBytes = 0
	cl.heldReplies = 0
}
