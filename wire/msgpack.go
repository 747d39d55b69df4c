package wire

import (
	"encoding/binary"
	"math"
)

// This file is the gw.msgpack half of the codec: DecodeMsgpack, a header
// reader shared with the transcoder, a non-recursive skipper, and the
// MessagePack writing primitives. The format is the 2013+ spec (str and bin
// distinct); client map keys must be str. Every length read from the input is
// checked against the bytes that remain before it is used, so a forged
// map32/str32 length cannot make the decoder allocate or run past the buffer.

// Decode errors, shared and read-only.
var (
	errMPEOF      = badRequest("truncated msgpack")
	errMPSyntax   = badRequest("malformed msgpack")
	errMPTrailing = badRequest("trailing data after msgpack value")
	errMPNotMap   = badRequest("message must be a msgpack map")
	errMPKey      = badRequest("map keys must be strings")
)

// mpKind classifies a MessagePack value by its first byte.
type mpKind uint8

const (
	mpInvalid mpKind = iota
	mpNil
	mpFalse
	mpTrue
	mpInt  // signed: fixints, int8..int64
	mpUint // uint8..uint64
	mpFloat32
	mpFloat64
	mpStr
	mpBin
	mpArray
	mpMap
	mpExt
)

// mpHdr describes the value at some offset: size is the bytes of its header
// (for scalars the whole value; for ext including the type byte), n is the
// payload length of str/bin/ext or the element count of array/map.
type mpHdr struct {
	kind mpKind
	size int
	n    int
}

// mpHead reads the header of the value at p[i]. It guarantees that the header
// is within p and that n is plausible: str/bin/ext payloads fit in what
// remains, and an array or map does not claim more elements than remaining
// bytes (every element takes at least one).
func mpHead(p []byte, i int) (mpHdr, error) {
	if i >= len(p) {
		return mpHdr{}, errMPEOF
	}
	c := p[i]
	var h mpHdr
	switch {
	case c <= 0x7f || c >= 0xe0:
		return mpHdr{kind: mpInt, size: 1}, nil
	case c <= 0x8f:
		h = mpHdr{kind: mpMap, size: 1, n: int(c & 0x0f)}
	case c <= 0x9f:
		h = mpHdr{kind: mpArray, size: 1, n: int(c & 0x0f)}
	case c <= 0xbf:
		h = mpHdr{kind: mpStr, size: 1, n: int(c & 0x1f)}
	default:
		switch c {
		case 0xc0:
			return mpHdr{kind: mpNil, size: 1}, nil
		case 0xc2:
			return mpHdr{kind: mpFalse, size: 1}, nil
		case 0xc3:
			return mpHdr{kind: mpTrue, size: 1}, nil
		case 0xc4, 0xc5, 0xc6:
			h = mpHdr{kind: mpBin}
			h.size, h.n = mpLen(p, i, c-0xc4)
		case 0xc7, 0xc8, 0xc9:
			h = mpHdr{kind: mpExt}
			if h.size, h.n = mpLen(p, i, c-0xc7); h.size > 0 {
				h.size++ // type byte
			}
		case 0xca:
			h = mpHdr{kind: mpFloat32, size: 5}
		case 0xcb:
			h = mpHdr{kind: mpFloat64, size: 9}
		case 0xcc, 0xcd, 0xce, 0xcf:
			h = mpHdr{kind: mpUint, size: 1 + 1<<(c-0xcc)}
		case 0xd0, 0xd1, 0xd2, 0xd3:
			h = mpHdr{kind: mpInt, size: 1 + 1<<(c-0xd0)}
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
			h = mpHdr{kind: mpExt, size: 2, n: 1 << (c - 0xd4)}
		case 0xd9, 0xda, 0xdb:
			h = mpHdr{kind: mpStr}
			h.size, h.n = mpLen(p, i, c-0xd9)
		case 0xdc, 0xdd:
			h = mpHdr{kind: mpArray}
			h.size, h.n = mpLen(p, i, c-0xdc+1)
		case 0xde, 0xdf:
			h = mpHdr{kind: mpMap}
			h.size, h.n = mpLen(p, i, c-0xde+1)
		default: // 0xc1, never used
			return mpHdr{}, errMPSyntax
		}
	}
	if h.size < 0 || h.size > len(p)-i {
		return mpHdr{}, errMPEOF
	}
	left := len(p) - i - h.size
	switch h.kind {
	case mpStr, mpBin, mpExt:
		if h.n > left {
			return mpHdr{}, errMPEOF
		}
	case mpArray:
		if h.n > left {
			return mpHdr{}, errMPEOF
		}
	case mpMap:
		if h.n > left/2 {
			return mpHdr{}, errMPEOF
		}
	}
	return h, nil
}

// mpLen reads a big-endian length of 1<<w bytes (w = 0, 1, 2) after p[i] and
// returns the header size; size -1 means the length bytes are missing.
func mpLen(p []byte, i int, w byte) (size, n int) {
	size = 1 + 1<<w
	if len(p)-i < size {
		return -1, 0
	}
	switch w {
	case 0:
		n = int(p[i+1])
	case 1:
		n = int(binary.BigEndian.Uint16(p[i+1:]))
	default:
		n = int(binary.BigEndian.Uint32(p[i+1:]))
	}
	return size, n
}

// mpIntValue reads an integer whose header h is at p[i]: either a signed value, or
// (for uint64 values above MaxInt64) big = true and u set.
func mpIntValue(p []byte, i int, h mpHdr) (v int64, u uint64, big bool) {
	c := p[i]
	switch {
	case c <= 0x7f:
		return int64(c), 0, false
	case c >= 0xe0:
		return int64(int8(c)), 0, false
	}
	b := p[i+1 : i+h.size]
	switch c {
	case 0xcc:
		return int64(b[0]), 0, false
	case 0xcd:
		return int64(binary.BigEndian.Uint16(b)), 0, false
	case 0xce:
		return int64(binary.BigEndian.Uint32(b)), 0, false
	case 0xcf:
		u = binary.BigEndian.Uint64(b)
		if u > math.MaxInt64 {
			return 0, u, true
		}
		return int64(u), 0, false
	case 0xd0:
		return int64(int8(b[0])), 0, false
	case 0xd1:
		return int64(int16(binary.BigEndian.Uint16(b))), 0, false
	case 0xd2:
		return int64(int32(binary.BigEndian.Uint32(b))), 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), 0, false
}

// mpSkip validates and skips one complete value at p[i] without recursion:
// it counts the values still owed by open arrays and maps.
func mpSkip(p []byte, i int) (int, error) {
	pending := 1
	for pending > 0 {
		pending--
		h, err := mpHead(p, i)
		if err != nil {
			return 0, err
		}
		i += h.size
		switch h.kind {
		case mpStr, mpBin, mpExt:
			i += h.n
		case mpArray:
			pending += h.n
		case mpMap:
			pending += 2 * h.n
		}
		if pending > len(p)-i {
			return 0, errMPEOF
		}
	}
	return i, nil
}

// DecodeMsgpack decodes one gw.msgpack client map into e, with the same field
// names, rules and errors as DecodeJSON: unknown keys are skipped, the last
// duplicate wins, nil counts as absent (data keeps the raw nil), data and
// filter are the raw bytes of their values, keys must be str and string
// fields must be str (bin is refused: a client library that sends bin for a
// string is misconfigured). since must be a non-negative integer of any width.
// Strings are sub-slices of p, so this never allocates.
func DecodeMsgpack(p []byte, e *Envelope) error {
	e.reset()
	h, err := mpHead(p, 0)
	if err != nil {
		return err
	}
	if h.kind != mpMap {
		return errMPNotMap
	}
	i := h.size
	for k := 0; k < h.n; k++ {
		kh, err := mpHead(p, i)
		if err != nil {
			return err
		}
		if kh.kind != mpStr {
			return errMPKey
		}
		key := p[i+kh.size : i+kh.size+kh.n]
		i += kh.size + kh.n
		if i, err = e.mpField(p, i, key); err != nil {
			return err
		}
	}
	if i != len(p) {
		return errMPTrailing
	}
	if e.Type == TypeNone {
		return ErrMissingType
	}
	return nil
}

func (e *Envelope) mpField(p []byte, i int, key []byte) (int, error) {
	var dst *[]byte
	var typeErr error
	switch string(key) {
	case "type":
		s, next, err := mpStrOrNil(p, i, errTypeNotStr)
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
		s, next, err := mpStrOrNil(p, i, errPriorityNotStr)
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
		end, err := mpSkip(p, i)
		if err != nil {
			return 0, err
		}
		e.Data = p[i:end:end]
		return end, nil
	case "filter":
		h, err := mpHead(p, i)
		if err != nil {
			return 0, err
		}
		end, err := mpSkip(p, i)
		if err != nil {
			return 0, err
		}
		e.Filter = nil
		switch h.kind {
		case mpNil:
		case mpMap:
			e.Filter = p[i:end:end]
		default:
			return 0, errBadFilterRaw
		}
		return end, nil
	case "since":
		h, err := mpHead(p, i)
		if err != nil {
			return 0, err
		}
		switch h.kind {
		case mpNil:
			e.Since, e.HasSince = 0, false
		case mpInt, mpUint:
			v, u, big := mpIntValue(p, i, h)
			switch {
			case big:
				e.Since = u
			case v < 0:
				return 0, errBadSince
			default:
				e.Since = uint64(v)
			}
			e.HasSince = true
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
		return mpSkip(p, i)
	}
	s, next, err := mpStrOrNil(p, i, typeErr)
	if err != nil {
		return 0, err
	}
	*dst = s
	return next, nil
}

// mpStrOrNil reads a str (returned non-nil) or nil (returned nil).
func mpStrOrNil(p []byte, i int, typeErr error) ([]byte, int, error) {
	h, err := mpHead(p, i)
	if err != nil {
		return nil, 0, err
	}
	switch h.kind {
	case mpStr:
		end := i + h.size + h.n
		return p[i+h.size : end : end], end, nil
	case mpNil:
		return nil, i + 1, nil
	}
	return nil, 0, typeErr
}

// mpStrHeaderSize is the size of the smallest str header for length n.
func mpStrHeaderSize(n int) int {
	switch {
	case n < 32:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

// mpPutStrHeader writes a str header of exactly size bytes for length n.
func mpPutStrHeader(b []byte, size, n int) {
	switch size {
	case 1:
		b[0] = 0xa0 | byte(n)
	case 2:
		b[0], b[1] = 0xd9, byte(n)
	case 3:
		b[0] = 0xda
		binary.BigEndian.PutUint16(b[1:], uint16(n))
	default:
		b[0] = 0xdb
		binary.BigEndian.PutUint32(b[1:], uint32(n))
	}
}

func mpAppendStr(dst []byte, s string) []byte {
	size := mpStrHeaderSize(len(s))
	n := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)[:n+size]
	mpPutStrHeader(dst[n:], size, len(s))
	return append(dst, s...)
}

func mpAppendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
}

func mpAppendMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), uint32(n))
}

// mpAppendInt appends v in the smallest encoding (non-negative values as
// unsigned, the way most encoders do).
func mpAppendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return mpAppendUint(dst, uint64(v))
	}
	switch {
	case v >= -32:
		return append(dst, byte(int8(v)))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(int32(v)))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func mpAppendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

func mpAppendFloat64(dst []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f))
}

// msgpackFilterItems is jsonFilterItems for a MessagePack map.
func msgpackFilterItems(p []byte) ([]filterItem, error) {
	h, err := mpHead(p, 0)
	if err != nil {
		return nil, errFilter
	}
	if h.kind == mpNil {
		if len(p) != 1 {
			return nil, errFilter
		}
		return nil, nil
	}
	if h.kind != mpMap {
		return nil, errFilter
	}
	if h.n > MaxFilterTags {
		return nil, errFilterTooBig
	}
	items := make([]filterItem, 0, h.n)
	i := h.size
	str := func() (string, bool) {
		s, next, err := mpStrOrNil(p, i, errFilter)
		if err != nil || s == nil {
			return "", false
		}
		i = next
		return string(s), true
	}
	for k := 0; k < h.n; k++ {
		key, ok := str()
		if !ok {
			return nil, errFilter
		}
		it := filterItem{key: key}
		vh, err := mpHead(p, i)
		if err != nil {
			return nil, errFilter
		}
		switch vh.kind {
		case mpStr:
			it.val, _ = str()
		case mpArray:
			if vh.n > MaxFilterValues {
				return nil, errFilterTooBig
			}
			i += vh.size
			it.isList, it.list = true, make([]string, 0, vh.n)
			for range vh.n {
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
