package wire

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// This file is the gw.cbor half of the codec (RFC 8949, PROTOCOL.md section
// 13): DecodeCBOR, a header reader, a recursive validator, the writer
// primitives behind objWriter, the filter reader, and the transcoding of
// `data` between CBOR and JSON or MessagePack.
//
// The gateway refuses at the door what it could not hand to receivers of
// every encoding, as DecodeJSON refuses 1e400, so that a CBOR message
// reaches a whole room or nobody. The mapping (also in docs/protocol.md):
//
//	CBOR                          JSON                    MessagePack
//	unsigned / negative int   <-> exact integer           int/uint; below -2^63: float64
//	half, single float        ->  number (the shortest    float32 (half widened exactly)
//	                              float32 decimal)
//	double float              <-> number                  float64
//	NaN, Infinity                 refused at the door (no JSON form)
//	text string               <-> string                  str
//	byte string               ->  base64 string (std, padded), as msgpack bin
//	                          <->                         bin
//	array, map                <-> array, object           array, map
//	map key not a text string     refused at the door (no JSON form)
//	false, true, null         <-> false, true, null       false, true, nil
//	undefined                 ->  null                    nil
//	other simple values           refused at the door
//	tag 0 (date/time text),       the content, untagged (a CBOR receiver gets the tag)
//	tag 1 (epoch number),
//	tag 55799 (self-described)
//	tag 2, 3 (bignums)            refused at the door, like JSON numbers beyond float64
//	any other tag                 refused at the door
//	indefinite-length items       accepted; other encodings get them joined
//
// Written by the gateway, CBOR is definite-length with the shortest heads
// (RFC 8949 section 4.1's preferred serialization for integers, lengths and
// counts); JSON numbers that are not integers become doubles. Text strings
// must be valid UTF-8 (RFC 8949 section 3.1; each chunk of an indefinite one
// on its own); MessagePack str with invalid UTF-8 becomes U+FFFD in CBOR as
// it does in JSON. Nesting: maxDepth (256) arrays, maps and tags, as for JSON.
// Every length read from the input is checked against the bytes that remain
// before it is used, so forged lengths cannot make anything allocate or run
// past the buffer.

// CBOR errors, shared and read-only.
var (
	errCBOREOF      = badRequest("truncated CBOR")
	errCBORSyntax   = badRequest("malformed CBOR")
	errCBORTrailing = badRequest("trailing data after CBOR value")
	errCBORNotMap   = badRequest("message must be a CBOR map")
	errCBORKey      = badRequest("map keys must be text strings")
	errCBORUTF8     = badRequest("invalid UTF-8 in a CBOR text string")
	errCBORBignum   = badRequest("CBOR bignums (tags 2 and 3) have no JSON or msgpack form; send big numbers as strings")
	errCBORTag      = badRequest("CBOR tags other than 0, 1 and 55799 have no JSON or msgpack form")
	errCBORTagValue = badRequest("CBOR tag 0 must hold a text string and tag 1 a number")
	errCBORSimple   = badRequest("CBOR simple values other than false, true, null and undefined have no JSON or msgpack form")
)

// CBOR major types.
const (
	cbUint   = 0
	cbNeg    = 1
	cbBytes  = 2
	cbText   = 3
	cbArray  = 4
	cbMap    = 5
	cbTag    = 6
	cbSimple = 7
)

// Major type 7 additional information values.
const (
	cbFalse     = 20
	cbTrue      = 21
	cbNull      = 22
	cbUndefined = 23
	cbHalf      = 25
	cbSingle    = 26
	cbDouble    = 27
)

// Tags the gateway accepts (and unwraps for other encodings).
const (
	cbTagDateTime      = 0
	cbTagEpoch         = 1
	cbTagPosBignum     = 2
	cbTagNegBignum     = 3
	cbTagSelfDescribed = 55799
)

const cbBreak = 0xff

// cbHdr describes the item whose head is at some offset: major type,
// additional information, argument (length, count, integer, tag number or
// float bits), the head's size in bytes, and whether it is indefinite-length.
type cbHdr struct {
	major byte
	ai    byte
	arg   uint64
	size  int
	indef bool
}

// cbHead reads the head at p[i]. It refuses heads that are not well-formed
// (reserved additional information 28-30, indefinite length on a type that
// has none, a two-byte simple value below 32, a break outside an
// indefinite-length item) and lengths that cannot be true: a definite
// string longer than what remains, an array or map claiming more items than
// remaining bytes (every item takes at least one).
func cbHead(p []byte, i int) (cbHdr, error) {
	if i >= len(p) {
		return cbHdr{}, errCBOREOF
	}
	c := p[i]
	h := cbHdr{major: c >> 5, ai: c & 0x1f, size: 1}
	if h.ai < 24 { // the common case: the argument is in the first byte
		h.arg = uint64(h.ai)
		if h.major >= cbBytes && h.major <= cbMap && h.arg > uint64(len(p)-i-1)>>(h.major/cbMap) {
			return cbHdr{}, errCBOREOF
		}
		return h, nil
	}
	switch {
	case h.ai <= 27:
		n := 1 << (h.ai - 24)
		if len(p)-i-1 < n {
			return cbHdr{}, errCBOREOF
		}
		b := p[i+1 : i+1+n]
		switch n {
		case 1:
			h.arg = uint64(b[0])
		case 2:
			h.arg = uint64(binary.BigEndian.Uint16(b))
		case 4:
			h.arg = uint64(binary.BigEndian.Uint32(b))
		default:
			h.arg = binary.BigEndian.Uint64(b)
		}
		h.size += n
		if h.major == cbSimple && h.ai == 24 && h.arg < 32 {
			return cbHdr{}, errCBORSyntax // RFC 8949 section 3.3
		}
	case h.ai == 31:
		switch h.major {
		case cbBytes, cbText, cbArray, cbMap:
			h.indef = true
		default: // a break here is outside any indefinite item
			return cbHdr{}, errCBORSyntax
		}
	default: // 28-30 are reserved
		return cbHdr{}, errCBORSyntax
	}
	if h.indef {
		return h, nil
	}
	left := uint64(len(p) - i - h.size)
	switch h.major {
	case cbBytes, cbText, cbArray:
		if h.arg > left {
			return cbHdr{}, errCBOREOF
		}
	case cbMap:
		if h.arg > left/2 {
			return cbHdr{}, errCBOREOF
		}
	}
	return h, nil
}

// cbString validates the byte or text string whose head h is at p[i] and
// returns the index after it and its total payload length. Each chunk of an
// indefinite string must be a definite string of the same major type; text
// must be valid UTF-8.
func cbString(p []byte, i int, h cbHdr) (end, n int, err error) {
	if !h.indef {
		end = i + h.size + int(h.arg)
		if h.major == cbText && !validUTF8(p[i+h.size:end]) {
			return 0, 0, errCBORUTF8
		}
		return end, int(h.arg), nil
	}
	i += h.size
	for {
		if i >= len(p) {
			return 0, 0, errCBOREOF
		}
		if p[i] == cbBreak {
			return i + 1, n, nil
		}
		ch, err := cbHead(p, i)
		if err != nil {
			return 0, 0, err
		}
		if ch.major != h.major || ch.indef {
			return 0, 0, errCBORSyntax
		}
		start := i + ch.size
		i = start + int(ch.arg)
		if h.major == cbText && !validUTF8(p[start:i]) {
			return 0, 0, errCBORUTF8
		}
		n += int(ch.arg)
	}
}

// validUTF8 is utf8.Valid with a quicker path for the short ASCII strings
// that field names and values mostly are.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// validUTF8String is validUTF8 for a string.
func validUTF8String(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s)
		}
	}
	return true
}

// cbNextChunk returns the payload of the next chunk of a string already
// validated by cbString: for a definite string (head h at p[i]) the whole
// payload, then ok = false. Start with i at the string's head; it returns the
// index to pass next.
func cbNextChunk(p []byte, i int, h cbHdr, first bool) (chunk []byte, next int, ok bool) {
	if !h.indef {
		if !first {
			return nil, i, false
		}
		end := i + h.size + int(h.arg)
		return p[i+h.size : end], end, true
	}
	if first {
		i += h.size
	}
	if p[i] == cbBreak {
		return nil, i + 1, false
	}
	ch, _ := cbHead(p, i)
	end := i + ch.size + int(ch.arg)
	return p[i+ch.size : end], end, true
}

// cbMore reports whether another item of the array or map whose head was
// read follows at p[*i]: for a definite one while *k < count, for an
// indefinite one until the break, which it consumes.
func cbMore(p []byte, i *int, h cbHdr, k int) (bool, error) {
	if !h.indef {
		return uint64(k) < h.arg, nil
	}
	if *i >= len(p) {
		return false, errCBOREOF
	}
	if p[*i] == cbBreak {
		*i++
		return false, nil
	}
	return true, nil
}

// cbFloat returns the value of a half, single or double whose head is h and
// its width for formatting (32 for half and single).
func cbFloat(h cbHdr) (f float64, bits int) {
	switch h.ai {
	case cbHalf:
		return float64(halfToFloat32(uint16(h.arg))), 32
	case cbSingle:
		return float64(math.Float32frombits(uint32(h.arg))), 32
	}
	return math.Float64frombits(h.arg), 64
}

// halfToFloat32 widens an IEEE 754 half-precision value exactly.
func halfToFloat32(x uint16) float32 {
	sign := uint32(x>>15) << 31
	exp := uint32(x>>10) & 0x1f
	frac := uint32(x & 0x3ff)
	switch exp {
	case 0x1f: // infinity, NaN
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case 0: // zero, subnormal: frac * 2^-24
		f := float32(frac) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// cbCheckTag checks the tag whose head h is at p[i] and returns the index of
// its content.
func cbCheckTag(p []byte, i int, h cbHdr) (int, error) {
	content := i + h.size
	switch h.arg {
	case cbTagSelfDescribed:
		return content, nil
	case cbTagDateTime, cbTagEpoch:
		ch, err := cbHead(p, content)
		if err != nil {
			return 0, err
		}
		switch {
		case h.arg == cbTagDateTime && ch.major == cbText:
		case h.arg == cbTagEpoch && (ch.major == cbUint || ch.major == cbNeg):
		case h.arg == cbTagEpoch && ch.major == cbSimple && ch.ai >= cbHalf && ch.ai <= cbDouble:
		default:
			return 0, errCBORTagValue
		}
		return content, nil
	case cbTagPosBignum, cbTagNegBignum:
		return 0, errCBORBignum
	}
	return 0, errCBORTag
}

// cbSkip validates one data item at p[i] under the gateway's mapping (see
// the top of this file) and returns the index after it. depth counts the
// arrays, maps and tags around it.
func cbSkip(p []byte, i, depth int) (int, error) {
	if _, end, ok, err := cbShortText(p, i); ok {
		return end, err
	}
	if i < len(p) && p[i] < cbNeg<<5+24 && p[i]&0x1f < 24 { // a small integer
		return i + 1, nil
	}
	h, err := cbHead(p, i)
	if err != nil {
		return 0, err
	}
	switch h.major {
	case cbUint, cbNeg:
		return i + h.size, nil
	case cbBytes, cbText:
		end, _, err := cbString(p, i, h)
		return end, err
	case cbArray, cbMap:
		if depth >= maxDepth {
			return 0, errJSONDepth
		}
		isMap := h.major == cbMap
		i += h.size
		for k := 0; ; k++ {
			more, err := cbMore(p, &i, h, k)
			if err != nil {
				return 0, err
			}
			if !more {
				return i, nil
			}
			if isMap {
				if i, err = cbSkipKey(p, i); err != nil {
					return 0, err
				}
			}
			if i, err = cbSkip(p, i, depth+1); err != nil {
				return 0, err
			}
		}
	case cbTag:
		if depth >= maxDepth {
			return 0, errJSONDepth
		}
		content, err := cbCheckTag(p, i, h)
		if err != nil {
			return 0, err
		}
		return cbSkip(p, content, depth+1)
	}
	switch h.ai {
	case cbFalse, cbTrue, cbNull, cbUndefined:
		return i + h.size, nil
	case cbHalf, cbSingle, cbDouble:
		if f, _ := cbFloat(h); math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errMPNaN
		}
		return i + h.size, nil
	}
	return 0, errCBORSimple
}

// cbShortText reads the common case of a text string: definite, shorter
// than 24 bytes, its length in the first byte. ok is false for anything
// else, which the caller reads the long way.
func cbShortText(p []byte, i int) (s []byte, end int, ok bool, err error) {
	if i >= len(p) || p[i]-cbText<<5 >= 24 {
		return nil, 0, false, nil
	}
	end = i + 1 + int(p[i]-cbText<<5)
	if end > len(p) {
		return nil, 0, true, errCBOREOF
	}
	s = p[i+1 : end : end]
	if !validUTF8(s) {
		return nil, 0, true, errCBORUTF8
	}
	return s, end, true, nil
}

// cbSkipKey validates a map key (a text string) at p[i].
func cbSkipKey(p []byte, i int) (int, error) {
	if _, end, ok, err := cbShortText(p, i); ok {
		return end, err
	}
	h, err := cbHead(p, i)
	if err != nil {
		return 0, err
	}
	if h.major != cbText {
		return 0, errCBORKey
	}
	end, _, err := cbString(p, i, h)
	return end, err
}

// ValidCBOR reports whether p is exactly one CBOR data item that the gateway
// accepts as `data` (see the mapping at the top of cbor.go).
func ValidCBOR(p []byte) bool {
	end, err := cbSkip(p, 0, 0)
	return err == nil && end == len(p)
}

// DecodeCBOR decodes one gw.cbor client map into e, with the same field
// names, rules and errors as DecodeJSON: unknown keys are skipped (but must
// be valid under the mapping, like every value in the message), the last
// duplicate wins, null and undefined count as absent (data keeps the raw
// item), data and filter are the raw bytes of their items, keys and string
// fields must be text strings, since a non-negative integer. A top-level
// self-described tag (55799) is allowed. Strings are sub-slices of p, or
// for indefinite-length ones their concatenation in e's scratch buffer, so
// a long-lived Envelope decodes without allocating.
func DecodeCBOR(p []byte, e *Envelope) error {
	e.reset()
	h, err := cbHead(p, 0)
	if err != nil {
		return err
	}
	i := 0
	if h.major == cbTag && h.arg == cbTagSelfDescribed {
		i = h.size
		if h, err = cbHead(p, i); err != nil {
			return err
		}
	}
	if h.major != cbMap {
		return errCBORNotMap
	}
	i += h.size
	for k := 0; ; k++ {
		more, err := cbMore(p, &i, h, k)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		var key []byte
		if key, i, err = e.cbTextOrNull(p, i, errCBORKey); err != nil {
			return err
		}
		if key == nil {
			return errCBORKey // null or undefined
		}
		if i, err = e.cbField(p, i, key); err != nil {
			return err
		}
	}
	if i != len(p) {
		return errCBORTrailing
	}
	if e.Type == TypeNone {
		return ErrMissingType
	}
	return nil
}

// cbText reads the text string whose head h is at p[i]: a sub-slice of p, or
// for an indefinite one its chunks joined in e.scratch.
func (e *Envelope) cbText(p []byte, i int, h cbHdr) ([]byte, int, error) {
	end, _, err := cbString(p, i, h)
	if err != nil {
		return nil, 0, err
	}
	if !h.indef {
		return p[i+h.size : end : end], end, nil
	}
	mark := len(e.scratch)
	for c, j, ok := cbNextChunk(p, i, h, true); ok; c, j, ok = cbNextChunk(p, j, h, false) {
		e.scratch = append(e.scratch, c...)
	}
	s := e.scratch[mark:len(e.scratch):len(e.scratch)]
	if s == nil {
		s = p[i:i:i] // present but empty
	}
	return s, end, nil
}

// cbTextOrNull reads a text string (returned non-nil) or null/undefined
// (returned nil); anything else is typeErr.
func (e *Envelope) cbTextOrNull(p []byte, i int, typeErr error) ([]byte, int, error) {
	if s, end, ok, err := cbShortText(p, i); ok {
		return s, end, err
	}
	h, err := cbHead(p, i)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case h.major == cbText:
		return e.cbText(p, i, h)
	case h.major == cbSimple && (h.ai == cbNull || h.ai == cbUndefined):
		return nil, i + 1, nil
	}
	return nil, 0, typeErr
}

func (e *Envelope) cbField(p []byte, i int, key []byte) (int, error) {
	var dst *[]byte
	var typeErr error
	switch string(key) {
	case "type":
		s, next, err := e.cbTextOrNull(p, i, errTypeNotStr)
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
		s, next, err := e.cbTextOrNull(p, i, errPriorityNotStr)
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
		end, err := cbSkip(p, i, 0)
		if err != nil {
			return 0, err
		}
		e.Data = p[i:end:end]
		return end, nil
	case "filter":
		end, err := cbSkip(p, i, 0)
		if err != nil {
			return 0, err
		}
		h, _ := cbHead(p, i)
		e.Filter = nil
		switch {
		case h.major == cbSimple && (h.ai == cbNull || h.ai == cbUndefined):
		case h.major == cbMap:
			e.Filter = p[i:end:end]
		default:
			return 0, errBadFilterRaw
		}
		return end, nil
	case "since":
		h, err := cbHead(p, i)
		if err != nil {
			return 0, err
		}
		switch {
		case h.major == cbUint:
			e.Since, e.HasSince = h.arg, true
		case h.major == cbSimple && (h.ai == cbNull || h.ai == cbUndefined):
			e.Since, e.HasSince = 0, false
		default:
			return 0, errBadSince
		}
		return i + h.size, nil
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
		return cbSkip(p, i, 0)
	}
	s, next, err := e.cbTextOrNull(p, i, typeErr)
	if err != nil {
		return 0, err
	}
	*dst = s
	return next, nil
}

// --- writing ---------------------------------------------------------------

// cbHeadSize is the size of the shortest head for argument n.
func cbHeadSize(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	case n <= math.MaxUint32:
		return 5
	}
	return 9
}

// cbPutHead writes a head of exactly size bytes (as cbHeadSize gives for n
// or larger) for major type major and argument n.
func cbPutHead(b []byte, size int, major byte, n uint64) {
	m := major << 5
	switch size {
	case 1:
		b[0] = m | byte(n)
	case 2:
		b[0], b[1] = m|24, byte(n)
	case 3:
		b[0] = m | 25
		binary.BigEndian.PutUint16(b[1:], uint16(n))
	case 5:
		b[0] = m | 26
		binary.BigEndian.PutUint32(b[1:], uint32(n))
	default:
		b[0] = m | 27
		binary.BigEndian.PutUint64(b[1:], n)
	}
}

// cbAppendHead appends the shortest head for major type major and argument n.
func cbAppendHead(dst []byte, major byte, n uint64) []byte {
	if n < 24 {
		return append(dst, major<<5|byte(n))
	}
	size := cbHeadSize(n)
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, 0)[:at+size]
	cbPutHead(dst[at:], size, major, n)
	return dst
}

// cbAppendText appends s as a text string; invalid UTF-8 becomes U+FFFD so
// that the output is always valid CBOR.
func cbAppendText(dst []byte, s string) []byte {
	if len(s) < 24 && validUTF8String(s) { // the common case, one head byte
		return append(append(dst, cbText<<5|byte(len(s))), s...)
	}
	if utf8.ValidString(s) {
		return append(cbAppendHead(dst, cbText, uint64(len(s))), s...)
	}
	n := 0
	for _, r := range s { // invalid bytes range as U+FFFD, 3 bytes each
		n += utf8.RuneLen(r)
	}
	dst = cbAppendHead(dst, cbText, uint64(n))
	for _, r := range s {
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

func cbAppendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return cbAppendHead(dst, cbUint, uint64(v))
	}
	return cbAppendHead(dst, cbNeg, uint64(-1-v))
}

func cbAppendFloat64(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, cbSimple<<5|cbDouble), math.Float64bits(f))
}

func cbAppendFloat32(dst []byte, f float32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, cbSimple<<5|cbSingle), math.Float32bits(f))
}

// cbPatchContainer writes the head of an array or map of n items whose one
// reserved byte is at dst[hdr]. With 24 or more items the head is wider, so
// the items move right; that copy only happens for larger containers.
func cbPatchContainer(dst []byte, hdr int, major byte, n int) []byte {
	size := cbHeadSize(uint64(n))
	if size == 1 {
		cbPutHead(dst[hdr:], 1, major, uint64(n))
		return dst
	}
	end := len(dst)
	dst = append(dst, make([]byte, size-1)...) // append of a constant-size make does not allocate
	copy(dst[hdr+size:], dst[hdr+1:end])
	cbPutHead(dst[hdr:], size, major, uint64(n))
	return dst
}

// CBOR halves of objWriter (writer.go): one flat map with a reserved one-byte
// head (at most 23 fields; every reply in reply.go has fewer than 9).

func cbBeginObj(dst []byte, typ string) objWriter {
	w := objWriter{b: dst, c: CodecCBOR, hdr: len(dst), n: 1}
	w.b = append(w.b, cbMap<<5, cbText<<5|4, 't', 'y', 'p', 'e')
	w.b = cbAppendText(w.b, typ)
	return w
}

// cbKey writes a key: keys are short ASCII constants, so the one-byte head
// needs no checks.
func (w *objWriter) cbKey(k string) {
	w.n++
	if len(k) < 24 {
		w.b = append(append(w.b, cbText<<5|byte(len(k))), k...)
		return
	}
	w.b = cbAppendText(w.b, k)
}

func (w *objWriter) cbSstr(k, v string) {
	w.cbKey(k)
	w.b = cbAppendText(w.b, v)
}

func (w *objWriter) cbInt(k string, v int64) {
	w.cbKey(k)
	w.b = cbAppendInt(w.b, v)
}

func (w *objWriter) cbUint(k string, v uint64) {
	w.cbKey(k)
	w.b = cbAppendHead(w.b, cbUint, v)
}

func (w *objWriter) cbBool(k string, v bool) {
	w.cbKey(k)
	if v {
		w.b = append(w.b, cbSimple<<5|cbTrue)
	} else {
		w.b = append(w.b, cbSimple<<5|cbFalse)
	}
}

func (w *objWriter) cbRaw(k string, v []byte) {
	w.cbKey(k)
	if len(v) == 0 {
		w.b = append(w.b, cbSimple<<5|cbNull)
	} else {
		w.b = append(w.b, v...)
	}
}

func (w *objWriter) cbStrs(k string, vs []string) {
	w.cbKey(k)
	w.b = cbAppendHead(w.b, cbArray, uint64(len(vs)))
	for _, v := range vs {
		w.b = cbAppendText(w.b, v)
	}
}

func (w *objWriter) cbEnd() []byte {
	w.b[w.hdr] = cbMap<<5 | byte(w.n)
	return w.b
}

// --- filter ----------------------------------------------------------------

// cborFilterItems is jsonFilterItems for a CBOR map (definite or indefinite).
func cborFilterItems(p []byte) ([]filterItem, error) {
	var e Envelope // scratch for indefinite strings
	h, err := cbHead(p, 0)
	if err != nil {
		return nil, errFilter
	}
	if h.major == cbSimple && (h.ai == cbNull || h.ai == cbUndefined) {
		if len(p) != 1 {
			return nil, errFilter
		}
		return nil, nil
	}
	if h.major != cbMap {
		return nil, errFilter
	}
	items := []filterItem{}
	i := h.size
	str := func() (string, bool) {
		s, next, err := e.cbTextOrNull(p, i, errFilter)
		if err != nil || s == nil {
			return "", false
		}
		i = next
		return string(s), true
	}
	for k := 0; ; k++ {
		more, err := cbMore(p, &i, h, k)
		if err != nil {
			return nil, errFilter
		}
		if !more {
			break
		}
		if len(items) == MaxFilterTags {
			return nil, errFilterTooBig
		}
		key, ok := str()
		if !ok {
			return nil, errFilter
		}
		it := filterItem{key: key}
		vh, err := cbHead(p, i)
		if err != nil {
			return nil, errFilter
		}
		switch vh.major {
		case cbText:
			if it.val, ok = str(); !ok {
				return nil, errFilter
			}
		case cbArray:
			i += vh.size
			it.isList, it.list = true, []string{}
			for n := 0; ; n++ {
				more, err := cbMore(p, &i, vh, n)
				if err != nil {
					return nil, errFilter
				}
				if !more {
					break
				}
				if n == MaxFilterValues {
					return nil, errFilterTooBig
				}
				v, ok := str()
				if !ok {
					return nil, errFilter
				}
				it.list = append(it.list, v)
			}
		default:
			return nil, errFilter
		}
		items = append(items, it)
	}
	if i != len(p) {
		return nil, errFilter
	}
	return items, nil
}

// --- transcoding -----------------------------------------------------------

// transcodeCBOR is Transcode for pairs with CBOR on one side. A pair it has
// no direct path for (an encoding added later) goes through JSON, the
// form every encoding converts to and from.
func transcodeCBOR(dst, src []byte, from, to Codec) ([]byte, error) {
	switch {
	case from == to:
		return dst, errSameCodec
	case from == CodecCBOR && to == CodecJSON:
		return CBORToJSON(dst, src)
	case from == CodecJSON && to == CodecCBOR:
		return JSONToCBOR(dst, src)
	case from == CodecCBOR && to == CodecMsgpack:
		return CBORToMsgpack(dst, src)
	case from == CodecMsgpack && to == CodecCBOR:
		return MsgpackToCBOR(dst, src)
	}
	n := len(dst)
	js, err := Transcode(dst, src, from, CodecJSON)
	if err != nil {
		return dst[:n], err
	}
	// Convert the JSON just appended at js[n:]; the output goes after it (a
	// reallocation leaves the source in the old array), then moves down.
	out, err := Transcode(js, js[n:], CodecJSON, to)
	if err != nil {
		return dst[:n], err
	}
	m := copy(out[n:], out[len(js):])
	return out[:n+m], nil
}

// CBORToJSON appends the JSON form of the single CBOR data item src to dst
// under the gateway's mapping (top of cbor.go). On error it returns dst
// unchanged in length.
func CBORToJSON(dst, src []byte) ([]byte, error) {
	n := len(dst)
	out, i, err := cbToJSON(dst, src, 0, 0)
	if err == nil && i != len(src) {
		err = errCBORTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func cbToJSON(dst, p []byte, i, depth int) ([]byte, int, error) {
	if s, end, ok, err := cbShortText(p, i); ok {
		if err != nil {
			return dst, 0, err
		}
		return appendJSONString(dst, bstr(s)), end, nil
	}
	h, err := cbHead(p, i)
	if err != nil {
		return dst, 0, err
	}
	switch h.major {
	case cbUint:
		return appendUint(dst, h.arg), i + h.size, nil
	case cbNeg:
		return cbAppendNegJSON(dst, h.arg), i + h.size, nil
	case cbText:
		end, _, err := cbString(p, i, h)
		if err != nil {
			return dst, 0, err
		}
		return cbTextToJSON(dst, p, i, h), end, nil
	case cbBytes:
		end, n, err := cbString(p, i, h)
		if err != nil {
			return dst, 0, err
		}
		dst = append(dst, '"')
		if !h.indef {
			dst = base64.StdEncoding.AppendEncode(dst, p[i+h.size:end])
			return append(dst, '"'), end, nil
		}
		// Join the chunks after dst, encode from there (a reallocation
		// leaves the source in the old array), then move the text down.
		at := len(dst)
		for c, j, ok := cbNextChunk(p, i, h, true); ok; c, j, ok = cbNextChunk(p, j, h, false) {
			dst = append(dst, c...)
		}
		dst = base64.StdEncoding.AppendEncode(dst, dst[at:at+n])
		m := copy(dst[at:], dst[at+n:])
		return append(dst[:at+m], '"'), end, nil
	case cbArray, cbMap:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := h.major == cbMap
		if isMap {
			dst = append(dst, '{')
		} else {
			dst = append(dst, '[')
		}
		i += h.size
		for k := 0; ; k++ {
			more, err := cbMore(p, &i, h, k)
			if err != nil {
				return dst, 0, err
			}
			if !more {
				break
			}
			if k > 0 {
				dst = append(dst, ',')
			}
			if isMap {
				if i >= len(p) {
					return dst, 0, errCBOREOF
				}
				if p[i]>>5 != cbText {
					return dst, 0, errCBORKey
				}
				if dst, i, err = cbToJSON(dst, p, i, depth+1); err != nil {
					return dst, 0, err
				}
				dst = append(dst, ':')
			}
			if dst, i, err = cbToJSON(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
		}
		if isMap {
			return append(dst, '}'), i, nil
		}
		return append(dst, ']'), i, nil
	case cbTag:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		content, err := cbCheckTag(p, i, h)
		if err != nil {
			return dst, 0, err
		}
		return cbToJSON(dst, p, content, depth+1)
	}
	next := i + h.size
	switch h.ai {
	case cbFalse:
		return append(dst, "false"...), next, nil
	case cbTrue:
		return append(dst, "true"...), next, nil
	case cbNull, cbUndefined:
		return append(dst, "null"...), next, nil
	case cbHalf, cbSingle, cbDouble:
		f, bits := cbFloat(h)
		dst, err = appendJSONFloat(dst, f, bits)
		return dst, next, err
	}
	return dst, 0, errCBORSimple
}

// cbAppendNegJSON appends -1-n, which may be below math.MinInt64.
func cbAppendNegJSON(dst []byte, n uint64) []byte {
	if n <= math.MaxInt64 {
		return appendInt(dst, -1-int64(n))
	}
	if n == math.MaxUint64 {
		return append(dst, "-18446744073709551616"...)
	}
	return appendUint(append(dst, '-'), n+1)
}

// cbTextToJSON appends the validated text string at p[i] as a JSON string,
// joining the chunks of an indefinite one. Chunks are valid UTF-8 each, so
// escaping them one by one and dropping the quotes in between is exact.
func cbTextToJSON(dst, p []byte, i int, h cbHdr) []byte {
	if !h.indef {
		return appendJSONString(dst, bstr(p[i+h.size:i+h.size+int(h.arg)]))
	}
	dst = append(dst, '"')
	for c, j, ok := cbNextChunk(p, i, h, true); ok; c, j, ok = cbNextChunk(p, j, h, false) {
		at := len(dst)
		dst = appendJSONString(dst, bstr(c))
		m := copy(dst[at:], dst[at+1:len(dst)-1])
		dst = dst[:at+m]
	}
	return append(dst, '"')
}

// JSONToCBOR appends the CBOR form of the JSON value src (optional
// surrounding whitespace) to dst. Integers in [-2^64, 2^64) stay exact,
// other numbers become doubles (or integers when they have no fraction and
// fit an int64, as JSONToMsgpack does). On error it returns dst unchanged in
// length.
func JSONToCBOR(dst, src []byte) ([]byte, error) {
	n := len(dst)
	i := skipWS(src, 0)
	out, i, err := jsonToCB(dst, src, i, 0)
	if err == nil && skipWS(src, i) != len(src) {
		err = errJSONTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func jsonToCB(dst, p []byte, i, depth int) ([]byte, int, error) {
	if i >= len(p) {
		return dst, 0, errJSONEOF
	}
	switch c := p[i]; c {
	case '"':
		return jsonStrToCB(dst, p, i)
	case '{', '[':
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := c == '{'
		closer, major := byte(']'), byte(cbArray)
		if isMap {
			closer, major = '}', cbMap
		}
		hdr := len(dst)
		dst = append(dst, 0) // one-byte head, widened at the end if needed
		count := 0
		i = skipWS(p, i+1)
		if i < len(p) && p[i] == closer {
			return cbPatchContainer(dst, hdr, major, 0), i + 1, nil
		}
		for {
			var err error
			if isMap {
				if i >= len(p) {
					return dst, 0, errJSONEOF
				}
				if p[i] != '"' {
					return dst, 0, errJSONSyntax
				}
				if dst, i, err = jsonStrToCB(dst, p, i); err != nil {
					return dst, 0, err
				}
				i = skipWS(p, i)
				if i >= len(p) || p[i] != ':' {
					return dst, 0, errJSONSyntax
				}
				i = skipWS(p, i+1)
			}
			if dst, i, err = jsonToCB(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
			count++
			i = skipWS(p, i)
			if i >= len(p) {
				return dst, 0, errJSONEOF
			}
			if p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if p[i] != closer {
				return dst, 0, errJSONSyntax
			}
			return cbPatchContainer(dst, hdr, major, count), i + 1, nil
		}
	case 't':
		end, err := skipJSONLiteral(p, i, "true")
		return append(dst, cbSimple<<5|cbTrue), end, err
	case 'f':
		end, err := skipJSONLiteral(p, i, "false")
		return append(dst, cbSimple<<5|cbFalse), end, err
	case 'n':
		end, err := skipJSONLiteral(p, i, "null")
		return append(dst, cbSimple<<5|cbNull), end, err
	default:
		if c != '-' && (c < '0' || c > '9') {
			return dst, 0, errJSONSyntax
		}
		end, err := skipJSONNumber(p, i)
		if err != nil {
			return dst, 0, err
		}
		dst, err = appendCBNumber(dst, p[i:end])
		return dst, end, err
	}
}

// jsonStrToCB converts the JSON string at the quote p[i] into a text string.
// Invalid UTF-8 (possible only in input that skipped the text-frame check)
// becomes U+FFFD.
func jsonStrToCB(dst, p []byte, i int) ([]byte, int, error) {
	end, escaped, err := scanJSONString(p, i)
	if err != nil {
		return dst, 0, err
	}
	raw := p[i+1 : end-1]
	if !escaped {
		return cbAppendText(dst, bstr(raw)), end, nil
	}
	// Unescaping only shrinks, so a head sized for the raw length is wide
	// enough; shrink it afterwards to stay shortest.
	size := cbHeadSize(uint64(len(raw)))
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, 0)[:at+size]
	dst = appendUnescapedJSON(dst, raw)
	if !utf8.Valid(dst[at+size:]) {
		return cbAppendText(dst[:at], string(dst[at+size:])), end, nil
	}
	n := len(dst) - at - size
	if want := cbHeadSize(uint64(n)); want < size {
		copy(dst[at+want:], dst[at+size:])
		dst = dst[:at+want+n]
		size = want
	}
	cbPutHead(dst[at:], size, cbText, uint64(n))
	return dst, end, nil
}

// appendCBNumber converts a JSON number literal already checked by
// skipJSONNumber.
func appendCBNumber(dst, lit []byte) ([]byte, error) {
	integer := true
	for _, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			integer = false
			break
		}
	}
	if integer {
		neg := lit[0] == '-'
		digits := lit
		if neg {
			digits = lit[1:]
		}
		if neg && string(digits) == "18446744073709551616" { // -2^64, the lowest CBOR integer
			return cbAppendHead(dst, cbNeg, math.MaxUint64), nil
		}
		if u, ok := parseUint(digits); ok {
			switch {
			case !neg:
				return cbAppendHead(dst, cbUint, u), nil
			case u == 0: // -0
				return append(dst, 0), nil
			default:
				return cbAppendHead(dst, cbNeg, u-1), nil
			}
		}
	}
	f, err := strconv.ParseFloat(bstr(lit), 64)
	if err != nil {
		return dst, errNumRange
	}
	if f == math.Trunc(f) && f >= -1<<63 && f < 1<<63 {
		return cbAppendInt(dst, int64(f)), nil
	}
	return cbAppendFloat64(dst, f), nil
}

// CBORToMsgpack appends the MessagePack form of the single CBOR data item
// src to dst under the gateway's mapping. On error it returns dst unchanged
// in length.
func CBORToMsgpack(dst, src []byte) ([]byte, error) {
	n := len(dst)
	out, i, err := cbToMP(dst, src, 0, 0)
	if err == nil && i != len(src) {
		err = errCBORTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func cbToMP(dst, p []byte, i, depth int) ([]byte, int, error) {
	h, err := cbHead(p, i)
	if err != nil {
		return dst, 0, err
	}
	switch h.major {
	case cbUint:
		return mpAppendUint(dst, h.arg), i + h.size, nil
	case cbNeg:
		if h.arg <= math.MaxInt64 {
			return mpAppendInt(dst, -1-int64(h.arg)), i + h.size, nil
		}
		f := -0x1p64 // -1-arg rounded once, as a JSON reader of the exact integer does
		if h.arg < math.MaxUint64 {
			f = -float64(h.arg + 1)
		}
		return mpAppendFloat64(dst, f), i + h.size, nil
	case cbText, cbBytes:
		end, n, err := cbString(p, i, h)
		if err != nil {
			return dst, 0, err
		}
		if h.major == cbText {
			size := mpStrHeaderSize(n)
			at := len(dst)
			dst = append(dst, 0, 0, 0, 0, 0)[:at+size]
			mpPutStrHeader(dst[at:], size, n)
		} else {
			dst = mpAppendBinHeader(dst, n)
		}
		for c, j, ok := cbNextChunk(p, i, h, true); ok; c, j, ok = cbNextChunk(p, j, h, false) {
			dst = append(dst, c...)
		}
		return dst, end, nil
	case cbArray, cbMap:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := h.major == cbMap
		hdr := len(dst)
		dst = append(dst, 0)
		i += h.size
		k := 0
		for ; ; k++ {
			more, err := cbMore(p, &i, h, k)
			if err != nil {
				return dst, 0, err
			}
			if !more {
				break
			}
			if isMap {
				kh, err := cbHead(p, i)
				if err != nil {
					return dst, 0, err
				}
				if kh.major != cbText {
					return dst, 0, errCBORKey
				}
				if dst, i, err = cbToMP(dst, p, i, depth+1); err != nil {
					return dst, 0, err
				}
			}
			if dst, i, err = cbToMP(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return mpPatchContainer(dst, hdr, k, isMap), i, nil
	case cbTag:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		content, err := cbCheckTag(p, i, h)
		if err != nil {
			return dst, 0, err
		}
		return cbToMP(dst, p, content, depth+1)
	}
	next := i + h.size
	switch h.ai {
	case cbFalse:
		return append(dst, 0xc2), next, nil
	case cbTrue:
		return append(dst, 0xc3), next, nil
	case cbNull, cbUndefined:
		return append(dst, 0xc0), next, nil
	case cbHalf, cbSingle, cbDouble:
		f, bits := cbFloat(h)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, 0, errMPNaN
		}
		if bits == 32 {
			return binary.BigEndian.AppendUint32(append(dst, 0xca), math.Float32bits(float32(f))), next, nil
		}
		return mpAppendFloat64(dst, f), next, nil
	}
	return dst, 0, errCBORSimple
}

func mpAppendBinHeader(dst []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
}

// MsgpackToCBOR appends the CBOR form of the single MessagePack value src to
// dst: every msgpack type has a CBOR twin (bin is a byte string, float32 a
// single, NaN and infinities pass as CBOR can carry them); ext and non-str
// map keys are errors, as for JSON. On error it returns dst unchanged in
// length.
func MsgpackToCBOR(dst, src []byte) ([]byte, error) {
	n := len(dst)
	out, i, err := mpToCB(dst, src, 0, 0)
	if err == nil && i != len(src) {
		err = errMPTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func mpToCB(dst, p []byte, i, depth int) ([]byte, int, error) {
	h, err := mpHead(p, i)
	if err != nil {
		return dst, 0, err
	}
	next := i + h.size
	switch h.kind {
	case mpNil:
		return append(dst, cbSimple<<5|cbNull), next, nil
	case mpFalse:
		return append(dst, cbSimple<<5|cbFalse), next, nil
	case mpTrue:
		return append(dst, cbSimple<<5|cbTrue), next, nil
	case mpInt, mpUint:
		v, u, big := mpIntValue(p, i, h)
		if big {
			return cbAppendHead(dst, cbUint, u), next, nil
		}
		return cbAppendInt(dst, v), next, nil
	case mpFloat32:
		return cbAppendFloat32(dst, math.Float32frombits(binary.BigEndian.Uint32(p[i+1:]))), next, nil
	case mpFloat64:
		return cbAppendFloat64(dst, math.Float64frombits(binary.BigEndian.Uint64(p[i+1:]))), next, nil
	case mpStr:
		end := next + h.n
		return cbAppendText(dst, bstr(p[next:end])), end, nil
	case mpBin:
		end := next + h.n
		return append(cbAppendHead(dst, cbBytes, uint64(h.n)), p[next:end]...), end, nil
	case mpArray, mpMap:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := h.kind == mpMap
		if isMap {
			dst = cbAppendHead(dst, cbMap, uint64(h.n))
		} else {
			dst = cbAppendHead(dst, cbArray, uint64(h.n))
		}
		i = next
		for k := 0; k < h.n; k++ {
			if isMap {
				kh, err := mpHead(p, i)
				if err != nil {
					return dst, 0, err
				}
				if kh.kind != mpStr {
					return dst, 0, errMPMapKey
				}
				end := i + kh.size + kh.n
				dst = cbAppendText(dst, bstr(p[i+kh.size:end]))
				i = end
			}
			if dst, i, err = mpToCB(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return dst, i, nil
	case mpExt:
		return dst, 0, errMPExt
	}
	return dst, 0, errMPSyntax
}
