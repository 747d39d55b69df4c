package wire

// This file holds the gateway-to-client messages (PROTOCOL.md sections 2-4,
// 7, 8): the Delivery of a routed message and the Codec methods that append
// every reply and event in the connection's encoding, through objWriter
// (writer.go), so that callers never know which encoding they write.
// Pure functions over caller-owned buffers.

// Target says which name field a delivered message carries.
type Target uint8

// Delivery targets.
const (
	TargetRoom    Target = iota // "room"
	TargetChannel               // "channel"
	TargetUser                  // "to"
)

func (t Target) key() string {
	switch t {
	case TargetChannel:
		return "channel"
	case TargetUser:
		return "to"
	}
	return "room"
}

// Delivery is one message as a receiver sees it (PROTOCOL.md section 4). It is
// encoded once per codec in use and the bytes are shared by every receiver of
// that codec. Data must already be in the receiver's codec (see JSONToMsgpack
// and MsgpackToJSON); empty Data encodes as null. Empty From and ID are omitted.
type Delivery struct {
	Target Target
	Name   []byte
	From   []byte
	Data   []byte
	ID     []byte // gateway message id
	Seq    uint64
	HasSeq bool
	TS     int64 // unix milliseconds
}

// Reply and event type names (PROTOCOL.md sections 2-4, 7, 8).
const (
	ReplyMessage      = "message"
	ReplyAuthOK       = "auth:ok"
	ReplyAuthFail     = "auth:fail"
	ReplyPong         = "pong"
	ReplyJoined       = "joined"
	ReplyLeft         = "left"
	ReplySubscribed   = "subscribed"
	ReplyUnsubscribed = "unsubscribed"
	ReplyAck          = "ack"
	ReplyPresence     = "presence"
	ReplyResumed      = "resumed"
	ReplyGap          = "gap"
	ReplyReconnect    = "reconnect"
	ReplyRefreshed    = "refreshed"     // section 9
	EventTokenExpired = "token_expired" // section 9
	ReplyError        = "error"
	EventUserJoined   = "user:joined"
	EventUserLeft     = "user:left"
)

// AppendDelivery appends d encoded in c.
func (c Codec) AppendDelivery(dst []byte, d *Delivery) []byte {
	w := beginObj(c, dst, ReplyMessage)
	w.bstr(d.Target.key(), d.Name)
	if len(d.From) > 0 {
		w.bstr("from", d.From)
	}
	w.raw("data", d.Data)
	if len(d.ID) > 0 {
		w.bstr("id", d.ID)
	}
	if d.HasSeq {
		w.uint("seq", d.Seq)
	}
	w.int("ts", d.TS)
	return w.end()
}

// AppendDeliveryJSON appends d as a gw.json message object.
func AppendDeliveryJSON(dst []byte, d *Delivery) []byte { return CodecJSON.AppendDelivery(dst, d) }

// AppendDeliveryMsgpack appends d as a gw.msgpack message map.
func AppendDeliveryMsgpack(dst []byte, d *Delivery) []byte {
	return CodecMsgpack.AppendDelivery(dst, d)
}

// AppendAuthOK appends `auth:ok {user, conn, instance, id?}`.
func (c Codec) AppendAuthOK(dst []byte, user, conn, instance string, clientID []byte) []byte {
	return c.AppendAuthOKExp(dst, user, conn, instance, 0, clientID)
}

// AppendAuthOKExp appends `auth:ok {user, conn, instance, exp?, id?}`: exp
// is the token's expiry in UNIX seconds, left out when 0 (no exp).
func (c Codec) AppendAuthOKExp(dst []byte, user, conn, instance string, exp int64, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyAuthOK)
	w.sstr("user", user)
	w.sstr("conn", conn)
	w.sstr("instance", instance)
	if exp != 0 {
		w.int("exp", exp)
	}
	w.clientID(clientID)
	return w.end()
}

// AppendRefreshed appends `refreshed {exp?, id?}` (section 9): exp is the
// new token's expiry in UNIX seconds, left out when 0 (no exp).
func (c Codec) AppendRefreshed(dst []byte, exp int64, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyRefreshed)
	if exp != 0 {
		w.int("exp", exp)
	}
	w.clientID(clientID)
	return w.end()
}

// AppendTokenExpired appends `token_expired {close_in_ms}` (section 9): the
// connection closes with 4011 in close_in_ms unless a refresh comes.
func (c Codec) AppendTokenExpired(dst []byte, closeInMS int64) []byte {
	w := beginObj(c, dst, EventTokenExpired)
	w.int("close_in_ms", closeInMS)
	return w.end()
}

// LeftRevoked is the reason of a `left` the client did not ask for: a
// refreshed token no longer allows the room or channel (section 9).
const LeftRevoked = "revoked"

// AppendLeftTarget appends `left {room|channel, reason}`: a membership the
// gateway ended (a revoked one, section 9; the control API's unsubscribe
// uses AppendLeftReason, which also names the reply type).
func (c Codec) AppendLeftTarget(dst []byte, target Target, name []byte, reason string) []byte {
	w := beginObj(c, dst, ReplyLeft)
	w.bstr(target.key(), name)
	w.sstr("reason", reason)
	return w.end()
}

// AppendAuthFail appends `auth:fail {reason}`; the connection is then closed
// with 4501 by the caller.
func (c Codec) AppendAuthFail(dst []byte, reason string) []byte {
	w := beginObj(c, dst, ReplyAuthFail)
	w.sstr("reason", reason)
	return w.end()
}

// AppendError appends `error {code, message, id?}`.
func (c Codec) AppendError(dst []byte, code, message string, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyError)
	w.sstr("code", code)
	w.sstr("message", message)
	w.clientID(clientID)
	return w.end()
}

// AppendProtocolError appends err as an `error` reply.
func (c Codec) AppendProtocolError(dst []byte, err *ProtocolError, clientID []byte) []byte {
	return c.AppendError(dst, err.Code, err.Message, clientID)
}

// AppendPong appends `pong {ts, id?}`.
func (c Codec) AppendPong(dst []byte, ts int64, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyPong)
	w.int("ts", ts)
	w.clientID(clientID)
	return w.end()
}

// AppendSimple appends `{type, key: value, id?}`, the shape of joined, left
// (key "room"), subscribed and unsubscribed (key "channel"). An empty key
// leaves the field out.
func (c Codec) AppendSimple(dst []byte, typ, key string, value, clientID []byte) []byte {
	w := beginObj(c, dst, typ)
	if key != "" {
		w.bstr(key, value)
	}
	w.clientID(clientID)
	return w.end()
}

// AppendAck appends `ack {id, mid?, seq?}` for message and publish: mid is
// the gateway message id the receivers see, seq its history sequence (0 =
// none; JetStream sequences start at 1). With both a sender recognises its
// own message when a resume replays it (PROTOCOL.md section 3). Empty mid is
// left out.
func (c Codec) AppendAck(dst []byte, clientID, mid []byte, seq uint64) []byte {
	w := beginObj(c, dst, ReplyAck)
	w.clientID(clientID)
	if len(mid) > 0 {
		w.bstr("mid", mid)
	}
	if seq != 0 {
		w.uint("seq", seq)
	}
	return w.end()
}

// AppendSendAck appends `ack {id, mid?, delivered, remote}` for send: mid is
// the gateway message id the receivers see (as in AppendAck; empty is left
// out), delivered the connections reached on this instance, remote whether
// the message was also handed to the backplane. delivered and remote are
// always present.
func (c Codec) AppendSendAck(dst []byte, clientID, mid []byte, delivered int, remote bool) []byte {
	w := beginObj(c, dst, ReplyAck)
	w.clientID(clientID)
	if len(mid) > 0 {
		w.bstr("mid", mid)
	}
	w.int("delivered", int64(delivered))
	w.bool("remote", remote)
	return w.end()
}

// AppendUserEvent appends `user:joined` / `user:left {room, user}`.
func (c Codec) AppendUserEvent(dst []byte, typ string, room []byte, user string) []byte {
	w := beginObj(c, dst, typ)
	w.bstr("room", room)
	w.sstr("user", user)
	return w.end()
}

// AppendPresence appends `presence {room, users: [...], id?}`.
func (c Codec) AppendPresence(dst []byte, room []byte, users []string, clientID []byte) []byte {
	return c.AppendPresencePage(dst, room, users, false, clientID)
}

// AppendPresencePage appends `presence {room, users, truncated?, id?}`:
// truncated (only when true) says users holds only the first of the
// room's users in sort order (the -presence-max-users cap).
func (c Codec) AppendPresencePage(dst []byte, room []byte, users []string, truncated bool, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyPresence)
	w.bstr("room", room)
	w.strs("users", users)
	if truncated {
		w.bool("truncated", true)
	}
	w.clientID(clientID)
	return w.end()
}

// AppendResumed appends `resumed {room, seq, recovered, id?}`.
func (c Codec) AppendResumed(dst []byte, room []byte, seq uint64, recovered bool, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyResumed)
	w.bstr("room", room)
	w.uint("seq", seq)
	w.bool("recovered", recovered)
	w.clientID(clientID)
	return w.end()
}

// AppendGap appends `gap {dropped}` (section 8).
func (c Codec) AppendGap(dst []byte, dropped uint64) []byte {
	w := beginObj(c, dst, ReplyGap)
	w.uint("dropped", dropped)
	return w.end()
}

// Reasons carried by a gap the gateway itself caused (PROTOCOL.md section 8
// plus docs/protocol.md): the low-priority gap of a backed-up connection
// carries none.
const (
	// GapOverload: messages for the address were dropped before reaching
	// the connection's event loop (its inbox byte budget, -loop-inbox-bytes,
	// was spent), or by the backplane's receiver (its pending budget).
	GapOverload = "overload"
	// GapHistory: history mode could not fill a gap in a room's sequence
	// from the stream; dropped is a lower bound, and `resume` may recover
	// what is still kept.
	GapHistory = "history"
	// GapBackplane: the backplane lost its connection and messages from
	// other instances may be missing; nobody knows how many.
	GapBackplane = "backplane"
)

// AppendGapReason appends `gap {reason}` with no dropped count, for losses
// nobody can count (the backplane's outage).
func (c Codec) AppendGapReason(dst []byte, reason string) []byte {
	w := beginObj(c, dst, ReplyGap)
	w.sstr("reason", reason)
	return w.end()
}

// AppendGapAt appends `gap {dropped, room|channel|to, reason}`: dropped
// messages addressed to name (none for gw.all) that never reached the
// connection's loop.
func (c Codec) AppendGapAt(dst []byte, dropped uint64, target Target, name []byte, reason string) []byte {
	w := beginObj(c, dst, ReplyGap)
	w.uint("dropped", dropped)
	if len(name) > 0 {
		w.bstr(target.key(), name)
	}
	w.sstr("reason", reason)
	return w.end()
}

// AppendReconnect appends `reconnect {after_ms}` (section 7).
func (c Codec) AppendReconnect(dst []byte, afterMS int64) []byte {
	w := beginObj(c, dst, ReplyReconnect)
	w.int("after_ms", afterMS)
	return w.end()
}

// ReplyRPCResult is the answer to a client's `rpc` (PROTOCOL.md section 10).
const ReplyRPCResult = "rpc:result"

// AppendRPCResult appends `rpc:result {id, data}`; data must already be in
// c (empty encodes as null).
func (c Codec) AppendRPCResult(dst []byte, clientID, data []byte) []byte {
	w := beginObj(c, dst, ReplyRPCResult)
	w.clientID(clientID)
	w.raw("data", data)
	return w.end()
}

// AppendServiceError appends `error {code: service_error, reason, message,
// id}`: a service answered an rpc with the error reason (its Wsgate-Error
// header) and message (its reply body).
func (c Codec) AppendServiceError(dst []byte, reason, message string, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyError)
	w.sstr("code", CodeServiceError)
	w.sstr("reason", reason)
	w.sstr("message", message)
	w.clientID(clientID)
	return w.end()
}

// AppendServerJoined appends `joined {room|channel, server:true}`: the
// gateway joined the connection itself (the connect hook's rooms and
// channels, PROTOCOL.md section 10); reply is ReplyJoined or "subscribed".
func (c Codec) AppendServerJoined(dst []byte, reply, key string, name []byte) []byte {
	w := beginObj(c, dst, reply)
	w.bstr(key, name)
	w.bool("server", true)
	return w.end()
}
