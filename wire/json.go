package wire

import (
	"strconv"
	"unicode/utf8"
)

// This file is the gw.json half of the codec: DecodeJSON, a hand-written
// scanner for one client object, and the JSON writing primitives used by
// objWriter and the transcoder. It exists because encoding/json reflects and
// allocates on every message, and an event loop decodes every inbound frame.
//
// The scanner is strict RFC 8259 (no comments, no trailing commas, no NaN),
// accepts whitespace around tokens, and limits nesting to maxDepth so that
// hostile input cannot exhaust the stack. It does not check UTF-8: gw.json
// messages arrive in text frames, which the frame layer has already validated
// (close 1007 otherwise).

// maxDepth limits nesting of arrays and objects in data, filters and
// transcoded values.
const maxDepth = 256

// Decode errors, shared and read-only (see ProtocolError).
var (
	errJSONSyntax   = badRequest("malformed JSON")
	errJSONEOF      = badRequest("truncated JSON")
	errJSONTrailing = badRequest("trailing data after JSON value")
	errJSONNotObj   = badRequest("message must be a JSON object")
	errJSONString   = badRequest("malformed JSON string")
	errJSONDepth    = badRequest("nesting too deep")
	errBadSince     = badRequest("since must be a non-negative integer")
	errBadFilterRaw = badRequest("filter must be an object")
)

// Wrong-type errors for string fields, shared and read-only.
var (
	errTypeNotStr     = badRequest("type must be a string")
	errIDNotStr       = badRequest("id must be a string")
	errTokenNotStr    = badRequest("token must be a string")
	errRoomNotStr     = badRequest("room must be a string")
	errChannelNotStr  = badRequest("channel must be a string")
	errMethodNotStr   = badRequest("method must be a string")
	errToNotStr       = badRequest("to must be a string")
	errPriorityNotStr = badRequest("priority must be a string")
)

// DecodeJSON decodes one gw.json client object into e, replacing all of e's
// previous contents. Unknown fields are skipped (any well-formed value).
// Duplicate keys: the last one wins, as with encoding/json. A null value for a
// string field, priority, since or filter is treated as absent; data keeps the
// raw null. Every failure is a shared *ProtocolError with Code bad_request; if
// the only problem is a missing type, the error is ErrMissingType and the other
// fields are set. Field rules beyond syntax and types are Validate's job.
func DecodeJSON(p []byte, e *Envelope) error {
	e.reset()
	i := skipWS(p, 0)
	if i >= len(p) || p[i] != '{' {
		return errJSONNotObj
	}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		i++
	} else {
		for {
			if i >= len(p) {
				return errJSONEOF
			}
			if p[i] != '"' {
				return errJSONSyntax
			}
			key, next, err := e.jsonString(p, i)
			if err != nil {
				return err
			}
			i = skipWS(p, next)
			if i >= len(p) || p[i] != ':' {
				return errJSONSyntax
			}
			i = skipWS(p, i+1)
			if i, err = e.jsonField(p, i, key); err != nil {
				return err
			}
			i = skipWS(p, i)
			if i >= len(p) {
				return errJSONEOF
			}
			if p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if p[i] != '}' {
				return errJSONSyntax
			}
			i++
			break
		}
	}
	if skipWS(p, i) != len(p) {
		return errJSONTrailing
	}
	if e.Type == TypeNone {
		return ErrMissingType
	}
	return nil
}

// jsonField decodes the value of key starting at p[i] into e.
func (e *Envelope) jsonField(p []byte, i int, key []byte) (int, error) {
	var dst *[]byte
	var typeErr error
	switch string(key) {
	case "type":
		s, next, err := e.jsonStringOrNull(p, i, errTypeNotStr)
		if err != nil {
			return 0, err
		}
		e.Type = TypeNone
		if s != nil {
			if e.Type = lookupType(s); e.Type == TypeNone {
				return 0, errUnknownType
			}
		}
		return next, nil
	case "priority":
		s, next, err := e.jsonStringOrNull(p, i, errPriorityNotStr)
		if err != nil {
			return 0, err
		}
		e.Priority = PriorityNormal
		if s != nil {
			var ok bool
			if e.Priority, ok = lookupPriority(s); !ok {
				return 0, errBadPriority
			}
		}
		return next, nil
	case "data":
		end, err := skipJSONValue(p, i, 0)
		if err != nil {
			return 0, err
		}
		e.Data = p[i:end:end]
		return end, nil
	case "filter":
		end, err := skipJSONValue(p, i, 0)
		if err != nil {
			return 0, err
		}
		e.Filter = nil
		switch p[i] {
		case 'n':
		case '{':
			e.Filter = p[i:end:end]
		default:
			return 0, errBadFilterRaw
		}
		return end, nil
	case "since":
		return e.jsonSince(p, i)
	case "id":
		dst, typeErr = &e.ID, errIDNotStr
	case "token":
		dst, typeErr = &e.Token, errTokenNotStr
	case "room":
		dst, typeErr = &e.Room, errRoomNotStr
	case "channel":
		dst, typeErr = &e.Channel, errChannelNotStr
	case "method":
		dst, typeErr = &e.Method, errMethodNotStr
	case "to":
		dst, typeErr = &e.To, errToNotStr
	default:
		return skipJSONValue(p, i, 0)
	}
	s, next, err := e.jsonStringOrNull(p, i, typeErr)
	if err != nil {
		return 0, err
	}
	*dst = s
	return next, nil
}

func (e *Envelope) jsonSince(p []byte, i int) (int, error) {
	if i < len(p) && p[i] == 'n' {
		end, err := skipJSONLiteral(p, i, "null")
		e.Since, e.HasSince = 0, false
		return end, err
	}
	if i >= len(p) || p[i] < '0' || p[i] > '9' {
		return 0, errBadSince
	}
	end, err := skipJSONNumber(p, i)
	if err != nil {
		return 0, err
	}
	v, ok := parseUint(p[i:end])
	if !ok {
		return 0, errBadSince
	}
	e.Since, e.HasSince = v, true
	return end, nil
}

// parseUint parses a decimal literal of digits only, rejecting overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// jsonStringOrNull reads a string (returned non-nil, possibly empty) or null
// (returned nil); any other value is typeErr.
func (e *Envelope) jsonStringOrNull(p []byte, i int, typeErr error) ([]byte, int, error) {
	if i >= len(p) {
		return nil, 0, errJSONEOF
	}
	switch p[i] {
	case '"':
		return e.jsonString(p, i) // never nil: an empty string is present
	case 'n':
		end, err := skipJSONLiteral(p, i, "null")
		return nil, end, err
	}
	return nil, 0, typeErr
}

// jsonString reads the string starting at the quote p[i]. Without escapes the
// result is a sub-slice of p; with escapes it is unescaped into e.scratch.
func (e *Envelope) jsonString(p []byte, i int) ([]byte, int, error) {
	end, escaped, err := scanJSONString(p, i)
	if err != nil {
		return nil, 0, err
	}
	raw := p[i+1 : end-1 : end-1]
	if !escaped {
		return raw, end, nil
	}
	mark := len(e.scratch)
	e.scratch = appendUnescapedJSON(e.scratch, raw)
	return e.scratch[mark:len(e.scratch):len(e.scratch)], end, nil
}

// jsonPlain marks bytes that may appear unescaped inside a JSON string and
// need no escaping when written: not a control character, quote or backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanJSONString validates the string starting at the quote p[i] and returns
// the index after its closing quote and whether it contains escapes.
func scanJSONString(p []byte, i int) (end int, escaped bool, err error) {
	i++
	for i < len(p) {
		c := p[i]
		if jsonPlain[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(p) {
				return 0, false, errJSONEOF
			}
			switch p[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(p) {
					return 0, false, errJSONEOF
				}
				if _, ok := hex4(p[i+2 : i+6]); !ok {
					return 0, false, errJSONString
				}
				i += 6
			default:
				return 0, false, errJSONString
			}
		default: // control character
			return 0, false, errJSONString
		}
	}
	return 0, false, errJSONEOF
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendUnescapedJSON appends the contents of a string already validated by
// scanJSONString, resolving escapes. Lone or mismatched UTF-16 surrogates
// become U+FFFD, as encoding/json does.
func appendUnescapedJSON(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(s[i+2:])
			i += 6
			if r >= 0xd800 && r < 0xdc00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
				if lo, ok := hex4(s[i+2:]); ok && lo >= 0xdc00 && lo < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
					i += 6
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

func skipWS(p []byte, i int) int {
	for i < len(p) {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func skipJSONLiteral(p []byte, i int, lit string) (int, error) {
	if len(p)-i < len(lit) {
		return 0, errJSONEOF
	}
	if string(p[i:i+len(lit)]) != lit {
		return 0, errJSONSyntax
	}
	return i + len(lit), nil
}

// skipJSONNumber validates the number grammar of RFC 8259 at p[i], and that
// the number fits a float64 (errNumRange otherwise): 1e400 is valid JSON,
// but a msgpack receiver could not be given it, and JavaScript reads it as
// Infinity, so the gateway refuses it at the door rather than deliver it to
// some receivers only (PROTOCOL.md section 5 in docs/protocol.md). Numbers
// too small for a float64 (1e-400) read as 0 everywhere and pass.
func skipJSONNumber(p []byte, i int) (int, error) {
	start := i
	if i < len(p) && p[i] == '-' {
		i++
	}
	if i >= len(p) {
		return 0, errJSONEOF
	}
	switch {
	case p[i] == '0':
		i++
	case p[i] >= '1' && p[i] <= '9':
		i = skipDigits(p, i+1)
	default:
		return 0, errJSONSyntax
	}
	intDigits := i - start
	if i < len(p) && p[i] == '.' {
		j := skipDigits(p, i+1)
		if j == i+1 {
			return 0, errJSONSyntax
		}
		i = j
	}
	exp := false
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		exp = true
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		j := skipDigits(p, i)
		if j == i {
			return 0, errJSONSyntax
		}
		i = j
	}
	// Without an exponent, fewer than 309 integer digits always fit
	// (float64 tops out near 1.8e308); only the rare rest is parsed.
	if exp || intDigits > 308 {
		if _, err := strconv.ParseFloat(bstr(p[start:i]), 64); err != nil {
			return 0, errNumRange
		}
	}
	return i, nil
}

func skipDigits(p []byte, i int) int {
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	return i
}

// skipJSONValue validates one value starting at p[i] (no leading whitespace)
// and returns the index after it.
func skipJSONValue(p []byte, i, depth int) (int, error) {
	if i >= len(p) {
		return 0, errJSONEOF
	}
	switch c := p[i]; c {
	case '"':
		end, _, err := scanJSONString(p, i)
		return end, err
	case '{', '[':
		if depth >= maxDepth {
			return 0, errJSONDepth
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(p, i+1)
		if i < len(p) && p[i] == closer {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if i >= len(p) {
					return 0, errJSONEOF
				}
				if p[i] != '"' {
					return 0, errJSONSyntax
				}
				if i, _, err = scanJSONString(p, i); err != nil {
					return 0, err
				}
				i = skipWS(p, i)
				if i >= len(p) || p[i] != ':' {
					return 0, errJSONSyntax
				}
				i = skipWS(p, i+1)
			}
			if i, err = skipJSONValue(p, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(p, i)
			if i >= len(p) {
				return 0, errJSONEOF
			}
			if p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if p[i] != closer {
				return 0, errJSONSyntax
			}
			return i + 1, nil
		}
	case 't':
		return skipJSONLiteral(p, i, "true")
	case 'f':
		return skipJSONLiteral(p, i, "false")
	case 'n':
		return skipJSONLiteral(p, i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return skipJSONNumber(p, i)
		}
		return 0, errJSONSyntax
	}
}

// ValidJSON reports whether p is exactly one well-formed JSON value (with
// optional surrounding whitespace) nested at most 256 deep.
func ValidJSON(p []byte) bool {
	i := skipWS(p, 0)
	end, err := skipJSONValue(p, i, 0)
	return err == nil && skipWS(p, end) == len(p)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quote, backslash and control
// characters are escaped, as are U+2028 and U+2029 (which break JavaScript
// parsers); invalid UTF-8 becomes U+FFFD so the output is always valid UTF-8
// for a text frame. '<', '>' and '&' are left alone: frames are not HTML.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendInt(dst []byte, v int64) []byte   { return strconv.AppendInt(dst, v, 10) }
func appendUint(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }

// jsonFilterItems reads a JSON object of string or array-of-string values.
// It returns nil items and no error for null, and a non-nil empty slice for {}.
func jsonFilterItems(p []byte) ([]filterItem, error) {
	var e Envelope // scratch for unescaping
	i := skipWS(p, 0)
	if i < len(p) && p[i] == 'n' {
		end, err := skipJSONLiteral(p, i, "null")
		if err != nil || skipWS(p, end) != len(p) {
			return nil, errFilter
		}
		return nil, nil
	}
	if i >= len(p) || p[i] != '{' {
		return nil, errFilter
	}
	items := []filterItem{}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		i++
	} else {
		for {
			if i >= len(p) || p[i] != '"' {
				return nil, errFilter
			}
			k, next, err := e.jsonString(p, i)
			if err != nil {
				return nil, errFilter
			}
			it := filterItem{key: string(k)}
			i = skipWS(p, next)
			if i >= len(p) || p[i] != ':' {
				return nil, errFilter
			}
			i = skipWS(p, i+1)
			switch {
			case i < len(p) && p[i] == '"':
				v, next, err := e.jsonString(p, i)
				if err != nil {
					return nil, errFilter
				}
				it.val, i = string(v), next
			case i < len(p) && p[i] == '[':
				it.isList, it.list = true, []string{}
				i = skipWS(p, i+1)
				if i < len(p) && p[i] == ']' {
					i++
					break
				}
				for {
					if i >= len(p) || p[i] != '"' {
						return nil, errFilter
					}
					v, next, err := e.jsonString(p, i)
					if err != nil {
						return nil, errFilter
					}
					if len(it.list) == MaxFilterValues {
						return nil, errFilterTooBig
					}
					it.list = append(it.list, string(v))
					i = skipWS(p, next)
					if i < len(p) && p[i] == ',' {
						i = skipWS(p, i+1)
						continue
					}
					if i >= len(p) || p[i] != ']' {
						return nil, errFilter
					}
					i++
					break
				}
			default:
				return nil, errFilter
			}
			if len(items) == MaxFilterTags {
				return nil, errFilterTooBig
			}
			items = append(items, it)
			i = skipWS(p, i)
			if i < len(p) && p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if i >= len(p) || p[i] != '}' {
				return nil, errFilter
			}
			i++
			break
		}
	}
	if skipWS(p, i) != len(p) {
		return nil, errFilter
	}
	return items, nil
}
