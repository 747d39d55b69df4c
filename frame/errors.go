package frame

import (
	"errors"
	"strconv"

	"github.com/gobwas/ws"
)

// CloseError is what Next returns for every protocol violation: the engine
// sends a close frame with Code and closes the connection. The values are
// pre-allocated (one per sentinel) so a failing connection costs no
// allocation; treat them as read-only.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
	Err    error // the sentinel, for errors.Is
}

func (e *CloseError) Error() string {
	return "frame: " + e.Reason + " (close " + strconv.Itoa(int(e.Code)) + ")"
}

func (e *CloseError) Unwrap() error { return e.Err }

// Sentinel errors. Next never returns them bare: it returns a *CloseError
// that wraps one, so both errors.Is(err, ErrUnmasked) and
// errors.As(err, &ce) work.
var (
	ErrUnmasked          = errors.New("frame: client frame is not masked")
	ErrReservedBits      = errors.New("frame: reserved bits set")
	ErrBadOpcode         = errors.New("frame: unknown opcode")
	ErrControlTooLong    = errors.New("frame: control frame payload over 125 bytes")
	ErrFragmentedControl = errors.New("frame: fragmented control frame")
	ErrBadContinuation   = errors.New("frame: unexpected continuation or data frame")
	ErrBadLength         = errors.New("frame: 64-bit payload length has the high bit set")
	ErrTooLarge          = errors.New("frame: message too large")
	ErrInvalidUTF8       = errors.New("frame: invalid UTF-8 in text")
	ErrBadCloseCode      = errors.New("frame: invalid close code")
	ErrBadClosePayload   = errors.New("frame: 1-byte close payload")
	ErrInflate           = errors.New("frame: invalid compressed data")
)

func closeErr(code ws.StatusCode, reason string, err error) *CloseError {
	return &CloseError{Code: code, Reason: reason, Err: err}
}

var (
	errUnmasked          = closeErr(ws.StatusProtocolError, "client frame is not masked", ErrUnmasked)
	errReservedBits      = closeErr(ws.StatusProtocolError, "reserved bits set", ErrReservedBits)
	errBadOpcode         = closeErr(ws.StatusProtocolError, "unknown opcode", ErrBadOpcode)
	errControlTooLong    = closeErr(ws.StatusProtocolError, "control frame payload over 125 bytes", ErrControlTooLong)
	errFragmentedControl = closeErr(ws.StatusProtocolError, "fragmented control frame", ErrFragmentedControl)
	errBadContinuation   = closeErr(ws.StatusProtocolError, "unexpected continuation or data frame", ErrBadContinuation)
	errBadLength         = closeErr(ws.StatusProtocolError, "64-bit payload length has the high bit set", ErrBadLength)
	errTooLarge          = closeErr(ws.StatusMessageTooBig, "message too large", ErrTooLarge)
	errInvalidUTF8       = closeErr(ws.StatusInvalidFramePayloadData, "invalid UTF-8 in text", ErrInvalidUTF8)
	errBadCloseCode      = closeErr(ws.StatusProtocolError, "invalid close code", ErrBadCloseCode)
	errBadClosePayload   = closeErr(ws.StatusProtocolError, "1-byte close payload", ErrBadClosePayload)
	// Corrupt deflate data means the payload is not what the message type
	// (a compressed message) promises, hence 1007 rather than 1002.
	errInflate = closeErr(ws.StatusInvalidFramePayloadData, "invalid compressed data", ErrInflate)
)
