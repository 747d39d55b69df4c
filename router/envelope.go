package router

// This file holds the codec-neutral half of the wire contract (PROTOCOL.md
// sections 3, 4 and 8): the decoded client Envelope, its validation, the
// ProtocolError that becomes an `error` reply, and the Codec value through
// which callers encode every gateway-to-client message without knowing which
// subprotocol the receiving connection speaks.
//
// Ownership: everything here is a pure function or a plain value. An Envelope
// (and the scratch buffer inside it) belongs to the goroutine that decodes into
// it, in practice one event loop, and its byte slices are valid only until the
// next decode into the same Envelope or until the input buffer is reused.

// MsgType is the `type` of a client message. The zero value means "no type".
type MsgType uint8

// Client message types (PROTOCOL.md section 3).
const (
	TypeNone MsgType = iota
	TypeAuth
	TypePing
	TypeJoin
	TypeLeave
	TypeMessage
	TypeSend
	TypeSubscribe
	TypeUnsubscribe
	TypePublish
	TypePresence
	TypeResume
)

var msgTypeNames = [...]string{
	TypeNone:        "",
	TypeAuth:        "auth",
	TypePing:        "ping",
	TypeJoin:        "join",
	TypeLeave:       "leave",
	TypeMessage:     "message",
	TypeSend:        "send",
	TypeSubscribe:   "subscribe",
	TypeUnsubscribe: "unsubscribe",
	TypePublish:     "publish",
	TypePresence:    "presence",
	TypeResume:      "resume",
}

// String returns the wire name of t ("" for TypeNone or an out-of-range value).
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return ""
}

// lookupType maps a wire name to its MsgType; a switch on string(b) compiles
// to comparisons without allocating.
func lookupType(b []byte) MsgType {
	switch string(b) {
	case "auth":
		return TypeAuth
	case "ping":
		return TypePing
	case "join":
		return TypeJoin
	case "leave":
		return TypeLeave
	case "message":
		return TypeMessage
	case "send":
		return TypeSend
	case "subscribe":
		return TypeSubscribe
	case "unsubscribe":
		return TypeUnsubscribe
	case "publish":
		return TypePublish
	case "presence":
		return TypePresence
	case "resume":
		return TypeResume
	}
	return TypeNone
}

// Priority orders outbound delivery (PROTOCOL.md section 8). The zero value is
// normal so that an absent `priority` needs no work.
type Priority uint8

// Priorities.
const (
	PriorityNormal Priority = iota
	PriorityLow
	PriorityHigh
)

// String returns the wire name of p.
func (p Priority) String() string {
	switch p {
	case PriorityNormal:
		return "normal"
	case PriorityLow:
		return "low"
	case PriorityHigh:
		return "high"
	}
	return "invalid"
}

// lookupPriority maps a wire name to a Priority.
func lookupPriority(b []byte) (Priority, bool) {
	switch string(b) {
	case "normal":
		return PriorityNormal, true
	case "low":
		return PriorityLow, true
	case "high":
		return PriorityHigh, true
	}
	return 0, false
}

// MaxClientIDLen is the longest client `id` echoed back (PROTOCOL.md section 3).
const MaxClientIDLen = 64

// Envelope is one decoded client-to-gateway message. It is filled by
// DecodeJSON or DecodeMsgpack without reflection; its byte slices point into
// the decoded input or, for JSON strings that contained escapes, into the
// Envelope's own scratch buffer, which is reused by the next decode so that a
// long-lived Envelope per event loop decodes without allocating.
//
// A nil slice means the field was absent (or null). Data and Filter hold the
// raw encoded value exactly as received (JSON text or MessagePack bytes) and are
// never re-encoded: a JSON `"data":null` gives Data == []byte("null").
type Envelope struct {
	Type     MsgType
	ID       []byte // client id, echoed in the reply
	Token    []byte
	Room     []byte
	Channel  []byte
	To       []byte
	Data     []byte // raw value in the sender's codec
	Priority Priority
	Since    uint64
	HasSince bool
	Filter   []byte // raw filter object in the sender's codec; see ParseFilter

	scratch []byte // unescaped JSON strings; owned by this Envelope
}

// reset clears e for a new decode, keeping the scratch buffer's capacity.
func (e *Envelope) reset() {
	*e = Envelope{scratch: e.scratch[:0]}
}

// Error codes of `error` replies (PROTOCOL.md section 4).
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeRateLimited  = "rate_limited"
	CodeTooLarge     = "too_large"
	CodeNotJoined    = "not_joined"
	CodeUnavailable  = "unavailable"
	CodeSlowConsumer = "slow_consumer"
)

// ProtocolError is a request the gateway refuses with an `error` reply; it
// never closes the connection by itself. Code is one of the Code* constants,
// Message is the human text sent to the client.
//
// The decoders return shared, preallocated *ProtocolError values so that a
// flood of malformed input costs no allocations: treat them as read-only.
type ProtocolError struct {
	Code    string
	Message string
}

func (e *ProtocolError) Error() string { return e.Code + ": " + e.Message }

func badRequest(msg string) *ProtocolError {
	return &ProtocolError{Code: CodeBadRequest, Message: msg}
}

// ErrMissingType is returned by the decoders when the object has no `type`
// (or a null one). All other fields have been decoded when it is returned,
// which lets a caller decode a type-less object on purpose.
var ErrMissingType = badRequest("missing type")

// Validation errors, shared and read-only.
var (
	errUnknownType  = badRequest("unknown type")
	errMissingRoom  = badRequest("missing room")
	errMissingChan  = badRequest("missing channel")
	errMissingTo    = badRequest("missing to")
	errMissingData  = badRequest("missing data")
	errMissingToken = badRequest("missing token")
	errMissingSince = badRequest("missing since")
	errBadRoom      = badRequest("bad room name")
	errBadChan      = badRequest("bad channel name")
	errBadTo        = badRequest("bad user id in to")
	errLongID       = badRequest("id longer than 64 bytes")
	errBadPriority  = badRequest("priority must be high, normal or low")
)

// Validate checks the fields that e.Type requires (PROTOCOL.md sections 3
// and 5): names are ValidName, the client id is at most 64 bytes, the priority
// is known. Fields a type does not use are ignored, not rejected, so clients
// may send extra context. `resume` needs `since` as well as `room`; the
// filter's shape is checked later by ParseFilter, where it is needed.
func (e *Envelope) Validate() error {
	if len(e.ID) > MaxClientIDLen {
		return errLongID
	}
	if e.Priority > PriorityHigh {
		return errBadPriority
	}
	switch e.Type {
	case TypeAuth:
		if len(e.Token) == 0 {
			return errMissingToken
		}
	case TypePing:
	case TypeJoin, TypeLeave, TypePresence:
		return checkName(e.Room, errMissingRoom, errBadRoom)
	case TypeResume:
		if err := checkName(e.Room, errMissingRoom, errBadRoom); err != nil {
			return err
		}
		if !e.HasSince {
			return errMissingSince
		}
	case TypeMessage:
		if err := checkName(e.Room, errMissingRoom, errBadRoom); err != nil {
			return err
		}
		if e.Data == nil {
			return errMissingData
		}
	case TypeSend:
		if err := checkName(e.To, errMissingTo, errBadTo); err != nil {
			return err
		}
		if e.Data == nil {
			return errMissingData
		}
	case TypeSubscribe, TypeUnsubscribe:
		return checkName(e.Channel, errMissingChan, errBadChan)
	case TypePublish:
		if err := checkName(e.Channel, errMissingChan, errBadChan); err != nil {
			return err
		}
		if e.Data == nil {
			return errMissingData
		}
	case TypeNone:
		return ErrMissingType
	default:
		return errUnknownType
	}
	return nil
}

func checkName(b []byte, missing, bad error) error {
	if len(b) == 0 {
		return missing
	}
	if !ValidName(b) {
		return bad
	}
	return nil
}

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

// Codec is a subprotocol's encoding. It is a small value so that a connection
// can store it and call codec.AppendError(dst, ...) without an interface call.
type Codec uint8

// Codecs.
const (
	CodecJSON    Codec = iota // gw.json, text frames
	CodecMsgpack              // gw.msgpack, binary frames
)

// Subprotocol names (PROTOCOL.md section 2).
const (
	SubprotocolJSON    = "gw.json"
	SubprotocolMsgpack = "gw.msgpack"
)

// ParseCodec maps a WebSocket subprotocol name to its Codec.
func ParseCodec(subprotocol string) (Codec, bool) {
	switch subprotocol {
	case SubprotocolJSON:
		return CodecJSON, true
	case SubprotocolMsgpack:
		return CodecMsgpack, true
	}
	return CodecJSON, false
}

// Subprotocol returns the WebSocket subprotocol name of c.
func (c Codec) Subprotocol() string {
	if c == CodecMsgpack {
		return SubprotocolMsgpack
	}
	return SubprotocolJSON
}

// String returns the subprotocol name.
func (c Codec) String() string { return c.Subprotocol() }

// Binary reports whether messages of c travel in binary frames (else text).
func (c Codec) Binary() bool { return c == CodecMsgpack }

// Decode decodes one client message in codec c into e.
func (c Codec) Decode(p []byte, e *Envelope) error {
	if c == CodecMsgpack {
		return DecodeMsgpack(p, e)
	}
	return DecodeJSON(p, e)
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
	w := beginObj(c, dst, ReplyAuthOK)
	w.sstr("user", user)
	w.sstr("conn", conn)
	w.sstr("instance", instance)
	w.clientID(clientID)
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

// AppendAck appends `ack {id}` for message and publish.
func (c Codec) AppendAck(dst []byte, clientID []byte) []byte {
	w := beginObj(c, dst, ReplyAck)
	w.clientID(clientID)
	return w.end()
}

// AppendSendAck appends `ack {id, delivered, remote}` for send: delivered is
// the connections reached on this instance, remote whether the message was
// also handed to the backplane. Both are always present.
func (c Codec) AppendSendAck(dst []byte, clientID []byte, delivered int, remote bool) []byte {
	w := beginObj(c, dst, ReplyAck)
	w.clientID(clientID)
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
	w := beginObj(c, dst, ReplyPresence)
	w.bstr("room", room)
	w.strs("users", users)
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
)

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
