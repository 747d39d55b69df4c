package wire

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is gw.protobuf (PROTOCOL.md section 13, schema docs/wsgate.proto):
// DecodeProtobuf for ClientMessage, the ServerMessage writer behind objWriter,
// the filter reader, and the transcoding of `data` between
// google.protobuf.Value and JSON. It is written by hand on protowire, without
// generated code or reflection, so that decoding allocates nothing; the
// tests hold it equal to google.golang.org/protobuf (proto, protojson,
// structpb) by differential fuzzing.
//
// Value mapping (the standard proto3 JSON mapping):
//
//	JSON             google.protobuf.Value
//	null         <-> null_value (any enum number reads as null)
//	true, false  <-> bool_value
//	number       <-> number_value, a double: JSON integers beyond 2^53 are
//	                 rounded to the nearest double; NaN and infinities
//	                 have no JSON form (error towards JSON)
//	string       <-> string_value (must be valid UTF-8; invalid UTF-8
//	                 from a JSON source becomes U+FFFD)
//	array        <-> list_value
//	object       <-> struct_value (duplicate keys are kept in order on the
//	                 wire; a reader keeps the last, as JSON readers do)
//
// Every Value must set exactly one kind, once: a Value with none has no
// JSON form (protojson refuses it too) and one with several, or a repeated
// struct_value/list_value, is a message a protobuf parser would merge; the
// gateway refuses both as bad_request rather than guess. Inside a Value,
// unknown fields and known fields with another wire type are skipped, as
// protobuf parsers do (ClientMessage is stricter: see DecodeProtobuf).

// ClientMessage field numbers (docs/wsgate.proto).
const (
	pbCType     protowire.Number = 1
	pbCID       protowire.Number = 2
	pbCToken    protowire.Number = 3
	pbCRoom     protowire.Number = 4
	pbCFilter   protowire.Number = 5 // = pbValueStruct, see DecodeProtobuf
	pbCChannel  protowire.Number = 6
	pbCTo       protowire.Number = 7
	pbCData     protowire.Number = 8
	pbCPriority protowire.Number = 9
	pbCSince    protowire.Number = 10
	pbCMethod   protowire.Number = 40 // rpc (numbers 40-49 are rpc's)
)

// google.protobuf.Value, Struct (and its map entry) and ListValue field
// numbers.
const (
	pbValueNull   protowire.Number = 1
	pbValueNumber protowire.Number = 2
	pbValueString protowire.Number = 3
	pbValueBool   protowire.Number = 4
	pbValueStruct protowire.Number = 5
	pbValueList   protowire.Number = 6

	pbStructFields protowire.Number = 1
	pbEntryKey     protowire.Number = 1
	pbEntryValue   protowire.Number = 2
	pbListValues   protowire.Number = 1
)

// pbNullValue is the body of a Value holding null_value: field 1, varint 0.
var pbNullValue = []byte{0x08, 0x00}

// Decode and transcoding errors, shared and read-only.
var (
	errPBMalformed  = badRequest("malformed protobuf")
	errPBUTF8       = badRequest("protobuf string is not valid UTF-8")
	errPBWireType   = badRequest("protobuf field has the wrong wire type for wsgate.v1.ClientMessage")
	errPBDuplicate  = badRequest("data or filter appears more than once")
	errPBValueEmpty = badRequest("google.protobuf.Value with no kind set")
	errPBValueKinds = badRequest("google.protobuf.Value with more than one kind set")
	errPBEntryTwice = badRequest("google.protobuf.Struct entry with more than one value")
)

// pbKind is the kind a google.protobuf.Value holds: its oneof field number,
// 0 for none.
type pbKind = protowire.Number

// pbValue is one Value's kind and payload: bits for null, number and bool,
// body for string, struct and list.
type pbValue struct {
	kind pbKind
	bits uint64
	body []byte
}

// pbConsumeTag is protowire.ConsumeTag that also refuses field numbers
// above protowire.MaxValidNumber, as protobuf parsers do.
func pbConsumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 0x08 { // one-byte tag, field 1-15
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// pbConsumeBytes is protowire.ConsumeBytes with the one-byte length of
// short fields inline.
func pbConsumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 {
		n := 1 + int(b[0])
		if n > len(b) {
			return nil, -1
		}
		return b[1:n], n
	}
	return protowire.ConsumeBytes(b)
}

// pbReadValue reads the body of a google.protobuf.Value: exactly one kind
// field with its wire type, unknown fields skipped.
func pbReadValue(v []byte) (pbValue, error) {
	var out pbValue
	for len(v) > 0 {
		num, typ, n := pbConsumeTag(v)
		if n < 0 {
			return out, errPBMalformed
		}
		v = v[n:]
		kind := pbKind(0)
		switch {
		case (num == pbValueNull || num == pbValueBool) && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(v)
			if m < 0 {
				return out, errPBMalformed
			}
			kind, out.bits, n = num, x, m
		case num == pbValueNumber && typ == protowire.Fixed64Type:
			x, m := protowire.ConsumeFixed64(v)
			if m < 0 {
				return out, errPBMalformed
			}
			kind, out.bits, n = num, x, m
		case (num == pbValueString || num == pbValueStruct || num == pbValueList) && typ == protowire.BytesType:
			b, m := pbConsumeBytes(v)
			if m < 0 {
				return out, errPBMalformed
			}
			kind, out.body, n = num, b, m
		default:
			if n = protowire.ConsumeFieldValue(num, typ, v); n < 0 {
				return out, errPBMalformed
			}
		}
		if kind != 0 {
			if out.kind != 0 {
				return out, errPBValueKinds
			}
			out.kind = kind
		}
		v = v[n:]
	}
	if out.kind == 0 {
		return out, errPBValueEmpty
	}
	return out, nil
}

// pbNextField reads one field of a message body whose fields of interest are
// all length-delimited: it returns the field number and, for a BytesType
// field, its payload (ok true); other fields are skipped (ok false).
func pbNextField(b []byte) (num protowire.Number, payload []byte, ok bool, n int) {
	num, typ, n := pbConsumeTag(b)
	if n < 0 {
		return 0, nil, false, -1
	}
	if typ == protowire.BytesType {
		p, m := pbConsumeBytes(b[n:])
		if m < 0 {
			return 0, nil, false, -1
		}
		return num, p, true, n + m
	}
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return 0, nil, false, -1
	}
	return num, nil, false, n + m
}

// pbReadEntry reads a Struct map entry: the key (last wins, "" if absent)
// and the value body (required, once).
func pbReadEntry(b []byte) (key, val []byte, err error) {
	hasVal := false
	for len(b) > 0 {
		num, p, ok, n := pbNextField(b)
		if n < 0 {
			return nil, nil, errPBMalformed
		}
		b = b[n:]
		switch {
		case ok && num == pbEntryKey:
			if !utf8.Valid(p) {
				return nil, nil, errPBUTF8
			}
			key = p
		case ok && num == pbEntryValue:
			if hasVal {
				return nil, nil, errPBEntryTwice
			}
			val, hasVal = p, true
		}
	}
	if !hasVal {
		return nil, nil, errPBValueEmpty
	}
	return key, val, nil
}

// pbCheckValue validates a Value body as ProtobufToJSON would read it,
// without writing anything: for the decoder, which keeps `data` raw.
func pbCheckValue(v []byte, depth int) error {
	val, err := pbReadValue(v)
	if err != nil {
		return err
	}
	switch val.kind {
	case pbValueString:
		if !utf8.Valid(val.body) {
			return errPBUTF8
		}
	case pbValueStruct, pbValueList:
		if depth >= maxDepth {
			return errJSONDepth
		}
		c := pbChildrenOf(val)
		for {
			_, child, ok, err := c.next()
			if !ok {
				return err
			}
			if err := pbCheckValue(child, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// pbChildren iterates over the entries of a struct_value (key and value
// body) or the elements of a list_value (value body), in wire order,
// skipping unknown fields. A plain loop rather than a callback keeps the
// recursive walks free of closures.
type pbChildren struct {
	b    []byte
	list bool
}

func pbChildrenOf(val pbValue) pbChildren {
	return pbChildren{b: val.body, list: val.kind == pbValueList}
}

// next returns the next child; ok is false at the end or on error.
func (c *pbChildren) next() (key, child []byte, ok bool, err error) {
	for len(c.b) > 0 {
		num, p, isBytes, n := pbNextField(c.b)
		if n < 0 {
			return nil, nil, false, errPBMalformed
		}
		c.b = c.b[n:]
		switch {
		case !isBytes:
		case c.list && num == pbListValues:
			return nil, p, true, nil
		case !c.list && num == pbStructFields:
			key, child, err := pbReadEntry(p)
			if err != nil {
				return nil, nil, false, err
			}
			return key, child, true, nil
		}
	}
	return nil, nil, false, nil
}

// DecodeProtobuf decodes one gw.protobuf ClientMessage into e, with the same
// rules and errors as DecodeJSON where the formats overlap: unknown fields
// are skipped, a repeated scalar field keeps the last value, an empty
// string is absent (proto3), data and filter are the raw bytes of their
// google.protobuf.Value (checked to be well-formed, each at most once).
// Unlike a generic protobuf parser it refuses a known field with the wrong
// wire type (a client built from another schema) rather than ignoring it.
// Strings are sub-slices of p, so this never allocates.
//
// e.Filter is the whole encoded filter field, tag included: field 5's tag is
// that of Value.struct_value, so those bytes are a google.protobuf.Value
// holding the filter object, and ParseFilter and Transcode read it like
// `data`.
func DecodeProtobuf(p []byte, e *Envelope) error {
	e.reset()
	for i := 0; i < len(p); {
		num, typ, n := pbConsumeTag(p[i:])
		if n < 0 {
			return errPBMalformed
		}
		start := i
		i += n
		if (num < pbCType || num > pbCSince) && num != pbCMethod { // unknown field
			if n = protowire.ConsumeFieldValue(num, typ, p[i:]); n < 0 {
				return errPBMalformed
			}
			i += n
			continue
		}
		if num == pbCSince {
			if typ != protowire.VarintType {
				return errPBWireType
			}
			v, n := protowire.ConsumeVarint(p[i:])
			if n < 0 {
				return errPBMalformed
			}
			e.Since, e.HasSince = v, true
			i += n
			continue
		}
		if typ != protowire.BytesType {
			return errPBWireType
		}
		s, n := pbConsumeBytes(p[i:])
		if n < 0 {
			return errPBMalformed
		}
		i += n
		s = s[:len(s):len(s)]
		switch num {
		case pbCData:
			if e.Data != nil {
				return errPBDuplicate
			}
			if err := pbCheckValue(s, 0); err != nil {
				return err
			}
			e.Data = s
			continue
		case pbCFilter:
			if e.Filter != nil {
				return errPBDuplicate
			}
			if err := pbCheckValue(p[start:i], 0); err != nil {
				return err
			}
			e.Filter = p[start:i:i]
			continue
		}
		if !utf8.Valid(s) {
			return errPBUTF8
		}
		switch num {
		case pbCType:
			e.Type = TypeNone
			if len(s) > 0 {
				if e.Type = lookupType(s); e.Type == TypeNone {
					return errUnknownType
				}
			}
		case pbCPriority:
			e.Priority = PriorityNormal
			if len(s) > 0 {
				var ok bool
				if e.Priority, ok = lookupPriority(s); !ok {
					return errBadPriority
				}
			}
		case pbCID:
			e.ID = s
		case pbCToken:
			e.Token = s
		case pbCRoom:
			e.Room = s
		case pbCChannel:
			e.Channel = s
		case pbCTo:
			e.To = s
		case pbCMethod:
			e.Method = s
		}
	}
	if e.Type == TypeNone {
		return ErrMissingType
	}
	return nil
}

// ServerMessage field numbers (docs/wsgate.proto), by the gw.json key that
// objWriter is given. A key missing here is a programming error that
// TestProtobufEveryReply catches.
func pbServerField(key string) protowire.Number {
	switch key {
	case "type":
		return 1
	case "id":
		return 2
	case "room":
		return 3
	case "channel":
		return 4
	case "to":
		return 5
	case "from":
		return 6
	case "data":
		return 7
	case "seq":
		return 8
	case "ts":
		return 9
	case "user":
		return 10
	case "conn":
		return 11
	case "instance":
		return 12
	case "reason":
		return 13
	case "code":
		return 14
	case "message":
		return 15
	case "users":
		return 16
	case "recovered":
		return 17
	case "dropped":
		return 18
	case "delivered":
		return 19
	case "remote":
		return 20
	case "after_ms":
		return 21
	case "mid":
		return 22
	case "truncated": // presence capped by -presence-max-users
		return 23
	case "server": // joined/subscribed by the gateway (hooks, control API)
		return 50
	case "exp": // token lifetime: 30-39
		return 30
	case "close_in_ms":
		return 31
	}
	panic("wire: reply key " + strconv.Quote(key) + " has no field in docs/wsgate.proto")
}

// The ServerMessage halves of objWriter's methods (writer.go). A message
// needs no header or trailer: the frame delimits it. Strings are assumed
// valid UTF-8 (names are ASCII, ids and texts come from the gateway or from
// validated client input).

func (w *objWriter) pbStr(k, v string) {
	w.b = protowire.AppendTag(w.b, pbServerField(k), protowire.BytesType)
	w.b = protowire.AppendString(w.b, v)
}

func (w *objWriter) pbVarint(k string, v uint64) {
	w.b = protowire.AppendTag(w.b, pbServerField(k), protowire.VarintType)
	w.b = protowire.AppendVarint(w.b, v)
}

// pbRaw writes a Value body already in gw.protobuf form; empty is null.
func (w *objWriter) pbRaw(k string, v []byte) {
	if len(v) == 0 {
		v = pbNullValue
	}
	w.b = protowire.AppendTag(w.b, pbServerField(k), protowire.BytesType)
	w.b = protowire.AppendBytes(w.b, v)
}

func (w *objWriter) pbStrs(k string, vs []string) {
	num := pbServerField(k)
	for _, v := range vs {
		w.b = protowire.AppendTag(w.b, num, protowire.BytesType)
		w.b = protowire.AppendString(w.b, v)
	}
}

// protobufFilterItems reads a filter in its Value form (see DecodeProtobuf):
// null gives no items, a struct_value of string or list-of-string values
// gives them in wire order.
func protobufFilterItems(raw []byte) ([]filterItem, error) {
	val, err := pbReadValue(raw)
	if err != nil {
		return nil, errFilter
	}
	switch val.kind {
	case pbValueNull:
		return nil, nil
	case pbValueStruct:
	default:
		return nil, errFilter
	}
	items := []filterItem{}
	c := pbChildrenOf(val)
	for {
		key, child, ok, err := c.next()
		if err != nil {
			return nil, errFilter
		}
		if !ok {
			break
		}
		if len(items) == MaxFilterTags {
			return nil, errFilterTooBig
		}
		it := filterItem{key: string(key)}
		v, err := pbReadValue(child)
		if err != nil {
			return nil, errFilter
		}
		switch v.kind {
		case pbValueString:
			if !utf8.Valid(v.body) {
				return nil, errFilter
			}
			it.val = string(v.body)
		case pbValueList:
			it.isList, it.list = true, []string{}
			elems := pbChildrenOf(v)
			for {
				_, elem, ok, err := elems.next()
				if err != nil {
					return nil, errFilter
				}
				if !ok {
					break
				}
				ev, err := pbReadValue(elem)
				if err != nil || ev.kind != pbValueString || !utf8.Valid(ev.body) {
					return nil, errFilter
				}
				if len(it.list) == MaxFilterValues {
					return nil, errFilterTooBig
				}
				it.list = append(it.list, string(ev.body))
			}
		default:
			return nil, errFilter
		}
		items = append(items, it)
	}
	return items, nil
}

// ProtobufToJSON appends the JSON form of the google.protobuf.Value body src
// to dst (the proto3 JSON mapping; numbers formatted as encoding/json does).
// On error it returns dst unchanged in length.
func ProtobufToJSON(dst, src []byte) ([]byte, error) {
	n := len(dst)
	out, err := pbToJSON(dst, src, 0)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func pbToJSON(dst, v []byte, depth int) ([]byte, error) {
	val, err := pbReadValue(v)
	if err != nil {
		return dst, err
	}
	switch val.kind {
	case pbValueNull:
		return append(dst, "null"...), nil
	case pbValueBool:
		if val.bits != 0 {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case pbValueNumber:
		// Integral doubles below 2^53 print the same as integers, and
		// formatting an integer is several times cheaper than the
		// shortest-float search (-0 keeps its sign through the slow path).
		if f := math.Float64frombits(val.bits); f == math.Trunc(f) && math.Abs(f) < 1<<53 && val.bits != 1<<63 {
			return strconv.AppendInt(dst, int64(f), 10), nil
		}
		return appendJSONFloat(dst, math.Float64frombits(val.bits), 64)
	case pbValueString:
		if !utf8.Valid(val.body) {
			return dst, errPBUTF8
		}
		return appendJSONString(dst, bstr(val.body)), nil
	}
	if depth >= maxDepth {
		return dst, errJSONDepth
	}
	open, closer := byte('['), byte(']')
	if val.kind == pbValueStruct {
		open, closer = '{', '}'
	}
	dst = append(dst, open)
	c := pbChildrenOf(val)
	for first := true; ; first = false {
		key, child, ok, err := c.next()
		if err != nil {
			return dst, err
		}
		if !ok {
			break
		}
		if !first {
			dst = append(dst, ',')
		}
		if val.kind == pbValueStruct {
			dst = appendJSONString(dst, bstr(key))
			dst = append(dst, ':')
		}
		if dst, err = pbToJSON(dst, child, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, closer), nil
}

// JSONToProtobuf appends the google.protobuf.Value body of the JSON value
// src (optional surrounding whitespace) to dst. On error it returns dst
// unchanged in length.
//
// Nested messages are length-prefixed, and a length is only known once the
// content is written: one byte is reserved and, for content of 128 bytes or
// more, the content moves right by the extra varint bytes (pbEndLen). Each
// level moves its content at most once, so the cost is O(size x depth),
// nothing for small values.
func JSONToProtobuf(dst, src []byte) ([]byte, error) {
	n := len(dst)
	i := skipWS(src, 0)
	out, i, err := jsonToPB(dst, src, i, 0)
	if err == nil && skipWS(src, i) != len(src) {
		err = errJSONTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// pbBeginLen appends the tag of a length-delimited field and reserves one
// byte for its length; it returns where that byte is.
func pbBeginLen(dst []byte, num protowire.Number) ([]byte, int) {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return append(dst, 0), len(dst)
}

// pbEndLen writes the length of the content after the reserved byte at.
func pbEndLen(dst []byte, at int) []byte {
	n := len(dst) - at - 1
	if n < 0x80 {
		dst[at] = byte(n)
		return dst
	}
	size := protowire.SizeVarint(uint64(n))
	var pad [binary.MaxVarintLen64]byte
	dst = append(dst, pad[:size-1]...)
	copy(dst[at+size:], dst[at+1:at+1+n])
	protowire.AppendVarint(dst[:at], uint64(n)) // in place: capacity suffices
	return dst
}

func jsonToPB(dst, p []byte, i, depth int) ([]byte, int, error) {
	if i >= len(p) {
		return dst, 0, errJSONEOF
	}
	switch c := p[i]; c {
	case '"':
		return jsonStrToPB(dst, p, i, pbValueString)
	case '{', '[':
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isObj := c == '{'
		closer := byte(']')
		kind := pbValueList
		if isObj {
			closer, kind = '}', pbValueStruct
		}
		dst, outer := pbBeginLen(dst, kind)
		i = skipWS(p, i+1)
		if i < len(p) && p[i] == closer {
			return pbEndLen(dst, outer), i + 1, nil
		}
		for {
			var err error
			// A struct member is a map entry {1: key, 2: value}; a list
			// element is a Value in field 1.
			var entry, val int
			if isObj {
				dst, entry = pbBeginLen(dst, pbStructFields)
				if i >= len(p) {
					return dst, 0, errJSONEOF
				}
				if p[i] != '"' {
					return dst, 0, errJSONSyntax
				}
				if dst, i, err = jsonStrToPB(dst, p, i, pbEntryKey); err != nil {
					return dst, 0, err
				}
				i = skipWS(p, i)
				if i >= len(p) || p[i] != ':' {
					return dst, 0, errJSONSyntax
				}
				i = skipWS(p, i+1)
				dst, val = pbBeginLen(dst, pbEntryValue)
			} else {
				dst, val = pbBeginLen(dst, pbListValues)
			}
			if dst, i, err = jsonToPB(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
			dst = pbEndLen(dst, val)
			if isObj {
				dst = pbEndLen(dst, entry)
			}
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
			return pbEndLen(dst, outer), i + 1, nil
		}
	case 't':
		end, err := skipJSONLiteral(p, i, "true")
		return append(dst, 0x20, 1), end, err
	case 'f':
		end, err := skipJSONLiteral(p, i, "false")
		return append(dst, 0x20, 0), end, err
	case 'n':
		end, err := skipJSONLiteral(p, i, "null")
		return append(dst, pbNullValue...), end, err
	default:
		if c != '-' && (c < '0' || c > '9') {
			return dst, 0, errJSONSyntax
		}
		end, err := skipJSONNumber(p, i)
		if err != nil {
			return dst, 0, err
		}
		f, err := strconv.ParseFloat(bstr(p[i:end]), 64)
		if err != nil {
			return dst, 0, errNumRange
		}
		dst = protowire.AppendTag(dst, pbValueNumber, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(f)), end, nil
	}
}

// jsonStrToPB writes the JSON string at the quote p[i] as the string field
// num. Invalid UTF-8 (possible in JSON from a service: only client text
// frames are checked) becomes U+FFFD, since protobuf strings must be UTF-8.
func jsonStrToPB(dst, p []byte, i int, num protowire.Number) ([]byte, int, error) {
	end, escaped, err := scanJSONString(p, i)
	if err != nil {
		return dst, 0, err
	}
	raw := p[i+1 : end-1]
	if !escaped && utf8.Valid(raw) {
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, raw), end, nil
	}
	dst, at := pbBeginLen(dst, num)
	if escaped {
		dst = appendUnescapedJSON(dst, raw)
	} else {
		dst = append(dst, raw...)
	}
	if s := dst[at+1:]; !utf8.Valid(s) {
		fixed := appendValidUTF8(nil, s) // rare: a service sent bad UTF-8
		dst = append(dst[:at+1], fixed...)
	}
	return pbEndLen(dst, at), end, nil
}

// appendValidUTF8 appends s with each invalid byte replaced by U+FFFD.
func appendValidUTF8(dst, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
