package wire

// This file holds the encoding-independent half of the client wire contract
// (PROTOCOL.md sections 3, 4 and 8): the decoded client Envelope that every
// encoding decodes into, its validation, and the ProtocolError that becomes
// an `error` reply.
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
	TypeRPC
	TypeRefresh
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
	TypeRPC:         "rpc",
	TypeRefresh:     "refresh",
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
	case "rpc":
		return TypeRPC
	case "refresh":
		return TypeRefresh
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
	Method   []byte // rpc: the service method (a name, ValidName)

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
	CodeTimeout      = "timeout"       // rpc: no answer within -rpc-timeout
	CodeServiceError = "service_error" // rpc: the service answered with an error
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
	errMissingMeth  = badRequest("missing method")
	errBadMethod    = badRequest("bad method name")
	errMissingRPCID = badRequest("rpc needs an id")
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
	case TypeAuth, TypeRefresh:
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
	case TypeRPC:
		// The id pairs the answer with the request: without one a client
		// with several calls in flight could not tell the answers apart.
		if len(e.ID) == 0 {
			return errMissingRPCID
		}
		return checkName(e.Method, errMissingMeth, errBadMethod)
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
