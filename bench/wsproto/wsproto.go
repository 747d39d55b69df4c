// Package wsproto is the tiny client-side WebSocket codec of the load client:
// upgrade request/response, masked frame encoding, server frame header parsing.
// It never allocates on the hot path.
package wsproto

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
)

// Opcodes.
const (
	OpCont   = 0x0
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xA
)

// MaxHeader is the largest client frame header (2 + 8 + 4 mask).
const MaxHeader = 14

// Key is the Sec-WebSocket-Key the load client sends (servers do not check
// uniqueness; a fixed key lets us verify the accept value with a byte compare).
const Key = "d3NiZW5jaC1sb2FkLWtleQ=="

// AcceptFor computes Sec-WebSocket-Accept for a key.
func AcceptFor(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Accept is AcceptFor(Key).
var Accept = AcceptFor(Key)

// UpgradeRequest builds the HTTP/1.1 upgrade request. path includes any query
// string; extra holds additional "Name: value" header lines (without CRLF).
func UpgradeRequest(host, path string, extra []string) []byte {
	var b bytes.Buffer
	b.WriteString("GET ")
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(host)
	b.WriteString("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ")
	b.WriteString(Key)
	b.WriteString("\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// ErrIncomplete means more bytes are needed.
var ErrIncomplete = errors.New("wsproto: incomplete")

// StatusError is a non-101 upgrade response.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "bad status code " + strconv.Itoa(e.Code) }

// ErrBadAccept is a 101 response without the expected Sec-WebSocket-Accept.
var ErrBadAccept = errors.New("wsproto: bad Sec-WebSocket-Accept")

// ErrBadResponse is an unparsable upgrade response.
var ErrBadResponse = errors.New("wsproto: malformed upgrade response")

var crlf2 = []byte("\r\n\r\n")
var acceptName = []byte("sec-websocket-accept:")

// ParseUpgradeResponse parses the server's response in b. It returns the
// number of header bytes consumed (the rest of b is already frame data), or
// ErrIncomplete, *StatusError, ErrBadAccept, ErrBadResponse.
func ParseUpgradeResponse(b []byte) (int, error) {
	end := bytes.Index(b, crlf2)
	if end < 0 {
		if len(b) > 16<<10 {
			return 0, ErrBadResponse
		}
		return 0, ErrIncomplete
	}
	head := b[:end]
	// Status line: HTTP/1.1 101 Switching Protocols
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0, ErrBadResponse
	}
	code, err := strconv.Atoi(string(head[9:12]))
	if err != nil {
		return 0, ErrBadResponse
	}
	if code != 101 {
		return 0, &StatusError{Code: code}
	}
	// find accept header, case-insensitively, line by line
	ok := false
	for rest := head; len(rest) > 0; {
		i := bytes.Index(rest, []byte("\r\n"))
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+2:]
		}
		if len(line) > len(acceptName) && bytes.EqualFold(line[:len(acceptName)], acceptName) {
			v := bytes.TrimSpace(line[len(acceptName):])
			ok = string(v) == Accept
			break
		}
	}
	if !ok {
		return 0, ErrBadAccept
	}
	return end + 4, nil
}

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Op     byte
	Masked bool
	Mask   [4]byte
	Len    int // payload length
	HLen   int // header length
}

// ErrProtocol is a frame the client refuses (reserved bits, bad length).
var ErrProtocol = errors.New("wsproto: protocol error")

// ParseHeader parses a frame header at the start of b. ok is false if b holds
// an incomplete header.
func ParseHeader(b []byte) (h Header, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return h, false, ErrProtocol // RSV bits: we never negotiate extensions
	}
	h.Fin = b0&0x80 != 0
	h.Op = b0 & 0x0f
	h.Masked = b1&0x80 != 0
	n := int(b1 & 0x7f)
	hl := 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n = int(binary.BigEndian.Uint16(b[2:4]))
		hl = 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<31 {
			return h, false, ErrProtocol
		}
		n = int(u)
		hl = 10
	}
	if h.Masked {
		if len(b) < hl+4 {
			return h, false, nil
		}
		copy(h.Mask[:], b[hl:hl+4])
		hl += 4
	}
	h.Len, h.HLen = n, hl
	return h, true, nil
}

// AppendFrame appends a complete masked client frame (FIN set).
func AppendFrame(dst []byte, op byte, payload []byte, mask uint32) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|op, 0x80|byte(n))
	case n < 65536:
		dst = append(dst, 0x80|op, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|op, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], mask)
	dst = append(dst, m[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	MaskBytes(m, dst[start:])
	return dst
}

// MaskBytes XORs b in place with the 4-byte key (starting at key offset 0).
func MaskBytes(key [4]byte, b []byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}
