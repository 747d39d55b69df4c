package natsbp

// # The backplane's wire format (docs/protocol.md, "Between instances")
//
// Payloads on <p>.room.<room>, <p>.user.<user>, <p>.chan.<channel> and
// <p>.all are one JSON object, the same that services publish (PROTOCOL.md
// section 5): data, from, priority, filter, and from gateways also id, ts
// and origin; stored room messages (history mode) add conn. This file is
// its hand-written encoder and decoder. They exist because encoding/json
// reflects and allocates on every message crossing instances; these do
// neither on the common path. They keep encoding/json's view of a payload,
// which FuzzBackplaneDecode checks against encoding/json itself:
//
//   - keys match case-insensitively (with encoding/json's Unicode folding:
//     "tſ" is ts) and may be escaped; the last of duplicate keys wins;
//     unknown keys are skipped, so services and older instances interoperate;
//   - null leaves a string field or ts absent, and data or filter the raw null;
//   - a payload that is JSON null is an empty message; anything else that is
//     not an object, or a field of the wrong type, fails the whole payload;
//   - strings are unescaped, and invalid UTF-8 in them becomes U+FFFD.
//
// Deliberately stricter than encoding/json (as the client decoder is): a
// payload nested more than 256 deep, or with a number beyond float64,
// anywhere, is refused. The gateway could not deliver such data anyway.
//
// Decoded strings alias the payload, or memory allocated for that one
// message (unescaped strings): never reused, so they may be kept.

import (
	"errors"
	"strconv"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/wsgate/wsgate/router"
	clientwire "github.com/wsgate/wsgate/wire"
)

// message is one decoded payload; its byte fields are nil when absent.
type message struct {
	data, filter               []byte // raw JSON values (a null is kept: "null")
	from, id, origin, priority []byte // unescaped
	ts                         int64
	conn                       uint64 // stored room messages only
}

// Payload errors, shared and read-only.
var (
	errPayloadNotObject = errors.New("payload is not a JSON object")
	errPayloadSyntax    = errors.New("malformed JSON")
	errPayloadTrailing  = errors.New("trailing data after the payload")
	errPayloadEOF       = errors.New("truncated JSON")
	errFieldType        = errors.New("field of the wrong type")
	errBadPriority      = errors.New("unknown priority")
)

// nullJSON is the data of a message that has none. Read-only.
var nullJSON = []byte("null")

// field names a payload's known keys.
type field uint8

const (
	fieldUnknown field = iota
	fieldData
	fieldFrom
	fieldPriority
	fieldFilter
	fieldID
	fieldTS
	fieldOrigin
	fieldConn // stored room messages only; unknown elsewhere
)

var fieldNames = [...]string{fieldData: "data", fieldFrom: "from", fieldPriority: "priority", fieldFilter: "filter",
	fieldID: "id", fieldTS: "ts", fieldOrigin: "origin", fieldConn: "conn"}

// appendMessage appends m's payload to dst: the fields that are set, in a
// fixed order, as encoding/json with omitempty would (data and filter must
// be valid JSON: the router checked them). conn > 0 adds "conn" (stored
// room messages).
func appendMessage(dst []byte, m *router.Remote, conn uint64) []byte {
	dst = append(dst, '{')
	first := len(dst)
	if data := trimJSONSpace(m.Data); len(data) > 0 {
		dst = append(dst, `"data":`...)
		dst = append(dst, data...)
	}
	if m.From != "" {
		dst = appendKey(dst, first, `"from":`)
		dst = clientwire.AppendJSONString(dst, m.From)
	}
	if m.Priority != clientwire.PriorityNormal {
		dst = appendKey(dst, first, `"priority":`)
		dst = clientwire.AppendJSONString(dst, m.Priority.String())
	}
	if filter := trimJSONSpace(m.Filter); len(filter) > 0 {
		dst = appendKey(dst, first, `"filter":`)
		dst = append(dst, filter...)
	}
	if m.ID != "" {
		dst = appendKey(dst, first, `"id":`)
		dst = clientwire.AppendJSONString(dst, m.ID)
	}
	if m.TS != 0 {
		dst = appendKey(dst, first, `"ts":`)
		dst = strconv.AppendInt(dst, m.TS, 10)
	}
	if m.Origin != "" {
		dst = appendKey(dst, first, `"origin":`)
		dst = clientwire.AppendJSONString(dst, m.Origin)
	}
	if conn != 0 {
		dst = appendKey(dst, first, `"conn":`)
		dst = strconv.AppendUint(dst, conn, 10)
	}
	return append(dst, '}')
}

// trimJSONSpace drops the whitespace around a JSON value: the receivers
// get the value as the decoder reads it (and as encoding/json did).
func trimJSONSpace(v []byte) []byte {
	v = v[clientwire.SkipJSONSpace(v, 0):]
	for len(v) > 0 {
		switch v[len(v)-1] {
		case ' ', '\t', '\n', '\r':
			v = v[:len(v)-1]
			continue
		}
		break
	}
	return v
}

// appendKey appends a separator unless the object (starting at first) is
// still empty, then the quoted key and colon.
func appendKey(dst []byte, first int, key string) []byte {
	if len(dst) > first {
		dst = append(dst, ',')
	}
	return append(dst, key...)
}

// decodeMessage decodes payload p into m, replacing all of m. stored
// decodes a stored room message (conn is a field; elsewhere it is unknown).
func decodeMessage(p []byte, m *message, stored bool) error {
	*m = message{}
	i := clientwire.SkipJSONSpace(p, 0)
	if i >= len(p) {
		return errPayloadEOF
	}
	switch p[i] {
	case '{':
	case 'n': // encoding/json: null into a struct is no change
		if len(p)-i < 4 || string(p[i:i+4]) != "null" {
			return errPayloadSyntax
		}
		return trailing(p, i+4)
	default:
		return errPayloadNotObject
	}
	i = clientwire.SkipJSONSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return trailing(p, i+1)
	}
	for {
		if i >= len(p) {
			return errPayloadEOF
		}
		if p[i] != '"' {
			return errPayloadSyntax
		}
		end, escaped, err := clientwire.ScanJSONString(p, i)
		if err != nil {
			return err
		}
		f := matchField(p[i+1:end-1], escaped)
		if f == fieldConn && !stored {
			f = fieldUnknown
		}
		i = clientwire.SkipJSONSpace(p, end)
		if i >= len(p) || p[i] != ':' {
			return errPayloadSyntax
		}
		i = clientwire.SkipJSONSpace(p, i+1)
		if i, err = m.value(p, i, f); err != nil {
			return err
		}
		i = clientwire.SkipJSONSpace(p, i)
		if i >= len(p) {
			return errPayloadEOF
		}
		switch p[i] {
		case ',':
			i = clientwire.SkipJSONSpace(p, i+1)
		case '}':
			return trailing(p, i+1)
		default:
			return errPayloadSyntax
		}
	}
}

// trailing accepts only whitespace after the payload's value.
func trailing(p []byte, i int) error {
	if clientwire.SkipJSONSpace(p, i) != len(p) {
		return errPayloadTrailing
	}
	return nil
}

// value reads the value of field f at p[i] (validated in any case) and
// returns the index after it.
func (m *message) value(p []byte, i int, f field) (int, error) {
	if i >= len(p) {
		return 0, errPayloadEOF
	}
	start := i
	switch f {
	case fieldData, fieldFilter:
		end, err := clientwire.SkipJSONValue(p, i)
		if err != nil {
			return 0, err
		}
		if f == fieldData {
			m.data = p[start:end:end]
		} else {
			m.filter = p[start:end:end]
		}
		return end, nil
	case fieldFrom, fieldID, fieldOrigin, fieldPriority:
		if p[i] != '"' {
			return nullOrTypeError(p, i)
		}
		s, end, err := unquote(p, i)
		if err != nil {
			return 0, err
		}
		switch f {
		case fieldFrom:
			m.from = s
		case fieldID:
			m.id = s
		case fieldOrigin:
			m.origin = s
		default:
			m.priority = s
		}
		return end, nil
	case fieldTS, fieldConn:
		if p[i] != '-' && (p[i] < '0' || p[i] > '9') {
			return nullOrTypeError(p, i)
		}
		end, err := clientwire.SkipJSONValue(p, i)
		if err != nil {
			return 0, err
		}
		// encoding/json parses the literal with strconv: 1.0 and 1e3 are
		// not integers, and out of range is an error.
		if f == fieldTS {
			m.ts, err = strconv.ParseInt(bstr(p[start:end]), 10, 64)
		} else {
			m.conn, err = strconv.ParseUint(bstr(p[start:end]), 10, 64)
		}
		if err != nil {
			return 0, errFieldType
		}
		return end, nil
	}
	return clientwire.SkipJSONValue(p, i)
}

// nullOrTypeError skips a null (the field stays absent); any other value
// is the wrong type.
func nullOrTypeError(p []byte, i int) (int, error) {
	if p[i] == 'n' {
		if len(p)-i < 4 || string(p[i:i+4]) != "null" {
			return 0, errPayloadSyntax
		}
		return i + 4, nil
	}
	if _, err := clientwire.SkipJSONValue(p, i); err != nil {
		return 0, err
	}
	return 0, errFieldType
}

// matchField names the key raw (its quoted contents): an exact match, or
// else one under encoding/json's case folding.
func matchField(raw []byte, escaped bool) field {
	if !escaped {
		switch string(raw) {
		case "data":
			return fieldData
		case "from":
			return fieldFrom
		case "priority":
			return fieldPriority
		case "filter":
			return fieldFilter
		case "id":
			return fieldID
		case "ts":
			return fieldTS
		case "origin":
			return fieldOrigin
		case "conn":
			return fieldConn
		}
	}
	key := raw
	if escaped {
		// A known key has at most 8 runes, each at most 6 bytes escaped
		// (\uXXXX); a longer one is unknown without unescaping it.
		if len(raw) > 6*len("priority") {
			return fieldUnknown
		}
		var buf [64]byte
		key = appendUnquoted(buf[:0], raw)
	}
	for f := fieldData; f <= fieldConn; f++ {
		if foldEqual(key, fieldNames[f]) {
			return f
		}
	}
	return fieldUnknown
}

// foldEqual reports whether key equals name (lower-case ASCII letters)
// under encoding/json's folding (each rune to the smallest of its simple
// fold set), so that "TS", "Ts" and "tſ" (U+017F) all match "ts".
func foldEqual(key []byte, name string) bool {
	if len(key) < len(name) || len(key) > utf8.UTFMax*len(name) {
		return false
	}
	j := 0
	for i := 0; i < len(key); {
		if j >= len(name) {
			return false
		}
		if c := key[i]; c < utf8.RuneSelf { // names are lower-case ASCII letters
			if c|0x20 != name[j] {
				return false
			}
			i++
			j++
			continue
		}
		r, size := utf8.DecodeRune(key[i:])
		if foldRune(r) != foldRune(rune(name[j])) {
			return false
		}
		i += size
		j++
	}
	return j == len(name)
}

// foldRune is encoding/json's: the smallest rune of r's fold set.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// unquote reads the string starting at the quote p[i]: a view of p when it
// needs no change, else a new unescaped copy.
func unquote(p []byte, i int) ([]byte, int, error) {
	end, escaped, err := clientwire.ScanJSONString(p, i)
	if err != nil {
		return nil, 0, err
	}
	raw := p[i+1 : end-1 : end-1]
	if !escaped && utf8.Valid(raw) {
		return raw, end, nil
	}
	return appendUnquoted(make([]byte, 0, len(raw)), raw), end, nil
}

// appendUnquoted appends the contents of a string already validated by
// ScanJSONString as encoding/json unquotes it: escapes resolved (the client
// codec's unescaper), then each byte of invalid UTF-8 replaced by U+FFFD.
func appendUnquoted(dst, s []byte) []byte {
	start := len(dst)
	dst = clientwire.AppendUnescapedJSON(dst, s)
	if utf8.Valid(dst[start:]) {
		return dst
	}
	// Rare: repair in a second pass over a copy of what was appended.
	raw := append([]byte(nil), dst[start:]...)
	dst = dst[:start]
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRune(raw[i:])
		dst = utf8.AppendRune(dst, r) // invalid: RuneError, one byte at a time
		i += size
	}
	return dst
}

// parsePriority reads a priority field ("" and absent are normal).
func parsePriority(b []byte) (clientwire.Priority, error) {
	switch string(b) {
	case "", "normal":
		return clientwire.PriorityNormal, nil
	case "high":
		return clientwire.PriorityHigh, nil
	case "low":
		return clientwire.PriorityLow, nil
	}
	return 0, errBadPriority
}

// bstr views b as a string without copying. Only for bytes nothing writes
// again: the payloads nats.go hands over (a fresh copy each), and the
// per-message copies of unquote.
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
