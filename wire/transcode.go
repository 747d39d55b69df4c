package wire

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
)

// This file converts a raw `data` value between gw.json and gw.msgpack. The
// router calls it once per message for each other encoding in use in the
// room or channel, never once per receiver, and the result goes into the
// Delivery for that codec.
//
// Mapping (the same model as encoding/json decoding into `any`):
//
//	JSON                      MessagePack
//	null, true, false     <-> nil, true, false
//	integer in int64      <-> smallest int/uint encoding
//	other number          <-> float64 (float32 read back as float32)
//	                           (a fraction-free float64 in int64 range, 1.0
//	                           or 1e3, is written as an int: same value)
//	string                <-> str (invalid UTF-8 in str -> U+FFFD in JSON)
//	                       <-  bin: base64 (std, padded) string, as encoding/json does for []byte
//	array, object         <-> array, map (msgpack map keys must be str)
//	                       <-  ext: error (no JSON meaning; timestamps included)
//
// uint64 values above MaxInt64 go to JSON as exact integers; JSON integers
// above MaxInt64 become float64, as encoding/json would make them. NaN and
// infinities have no JSON form and are an error. Nesting is limited to 256.
//
// Transcode is the dispatch point. The JSON<->MessagePack pair lives here; a
// new encoding adds its pair of directions to and from JSON (the form the
// backplane carries) in its own file, and a case in Transcode.

// Transcoding errors. They are *ProtocolError (bad_request) so that a router
// that transcodes on receipt can answer the sender with them directly.
var (
	errNumRange  = badRequest("number out of range: JSON numbers must fit a float64 (at most about 1.8e308)")
	errMPExt     = badRequest("msgpack ext values cannot be sent to JSON clients")
	errMPNaN     = badRequest("NaN or infinite number cannot be sent to JSON clients")
	errMPMapKey  = badRequest("msgpack map keys in data must be strings")
	errSameCodec = errors.New("wire: transcode between identical codecs")
)

// JSONToMsgpack appends the MessagePack form of the JSON value src (optional
// surrounding whitespace) to dst. On error it returns dst unchanged in length.
func JSONToMsgpack(dst, src []byte) ([]byte, error) {
	n := len(dst)
	i := skipWS(src, 0)
	out, i, err := jsonToMP(dst, src, i, 0)
	if err == nil && skipWS(src, i) != len(src) {
		err = errJSONTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// MsgpackToJSON appends the JSON form of the single MessagePack value src to
// dst. On error it returns dst unchanged in length.
func MsgpackToJSON(dst, src []byte) ([]byte, error) {
	n := len(dst)
	out, i, err := mpToJSON(dst, src, 0, 0)
	if err == nil && i != len(src) {
		err = errMPTrailing
	}
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// Transcode appends src, a value in codec from, converted to codec to. Equal
// codecs are a caller bug (the raw bytes should be shared) and an error.
func Transcode(dst, src []byte, from, to Codec) ([]byte, error) {
	switch {
	case from == CodecCBOR || to == CodecCBOR:
		return transcodeCBOR(dst, src, from, to)
	case from == CodecJSON && to == CodecMsgpack:
		return JSONToMsgpack(dst, src)
	case from == CodecMsgpack && to == CodecJSON:
		return MsgpackToJSON(dst, src)
	case from == CodecJSON && to == CodecProtobuf:
		return JSONToProtobuf(dst, src)
	case from == CodecProtobuf && to == CodecJSON:
		return ProtobufToJSON(dst, src)
	case from != to && from != CodecJSON && to != CodecJSON:
		// No direct path (gw.protobuf <-> gw.msgpack, and any later pair):
		// through JSON, at the cost of one intermediate buffer and a second
		// pass. Keep this case last.
		mid, err := Transcode(nil, src, from, CodecJSON)
		if err != nil {
			return dst, err
		}
		return Transcode(dst, mid, CodecJSON, to)
	}
	return dst, errSameCodec
}

func jsonToMP(dst, p []byte, i, depth int) ([]byte, int, error) {
	if i >= len(p) {
		return dst, 0, errJSONEOF
	}
	switch c := p[i]; c {
	case '"':
		return jsonStrToMP(dst, p, i)
	case '{', '[':
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := c == '{'
		closer := byte(']')
		if isMap {
			closer = '}'
		}
		hdr := len(dst)
		dst = append(dst, 0) // fix header, widened at the end if needed
		count := 0
		i = skipWS(p, i+1)
		if i < len(p) && p[i] == closer {
			return mpPatchContainer(dst, hdr, 0, isMap), i + 1, nil
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
				if dst, i, err = jsonStrToMP(dst, p, i); err != nil {
					return dst, 0, err
				}
				i = skipWS(p, i)
				if i >= len(p) || p[i] != ':' {
					return dst, 0, errJSONSyntax
				}
				i = skipWS(p, i+1)
			}
			if dst, i, err = jsonToMP(dst, p, i, depth+1); err != nil {
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
			return mpPatchContainer(dst, hdr, count, isMap), i + 1, nil
		}
	case 't':
		end, err := skipJSONLiteral(p, i, "true")
		return append(dst, 0xc3), end, err
	case 'f':
		end, err := skipJSONLiteral(p, i, "false")
		return append(dst, 0xc2), end, err
	case 'n':
		end, err := skipJSONLiteral(p, i, "null")
		return append(dst, 0xc0), end, err
	default:
		if c != '-' && (c < '0' || c > '9') {
			return dst, 0, errJSONSyntax
		}
		end, err := skipJSONNumber(p, i)
		if err != nil {
			return dst, 0, err
		}
		dst, err = appendMPNumber(dst, p[i:end])
		return dst, end, err
	}
}

// mpPatchContainer writes the header of a container whose one reserved byte
// is at dst[hdr]. Containers of 16 or more elements need a wider header, so
// their contents move right by 2 or 4 bytes; that copy is the price of a
// single pass and only applies to large containers.
func mpPatchContainer(dst []byte, hdr, n int, isMap bool) []byte {
	if n < 16 {
		if isMap {
			dst[hdr] = 0x80 | byte(n)
		} else {
			dst[hdr] = 0x90 | byte(n)
		}
		return dst
	}
	var h [5]byte
	var hb []byte
	if isMap {
		hb = mpAppendMapHeader(h[:0], n)
	} else {
		hb = mpAppendArrayHeader(h[:0], n)
	}
	extra := len(hb) - 1
	end := len(dst)
	dst = append(dst, h[:extra]...) // grow
	copy(dst[hdr+len(hb):], dst[hdr+1:end])
	copy(dst[hdr:], hb)
	return dst
}

// jsonStrToMP converts the JSON string at the quote p[i] into a msgpack str.
func jsonStrToMP(dst, p []byte, i int) ([]byte, int, error) {
	end, escaped, err := scanJSONString(p, i)
	if err != nil {
		return dst, 0, err
	}
	raw := p[i+1 : end-1]
	if !escaped {
		return mpAppendStr(dst, bstr(raw)), end, nil
	}
	// Unescaping only shrinks, so a header sized for the raw length is wide
	// enough; shrink it afterwards to stay canonical.
	size := mpStrHeaderSize(len(raw))
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)[:at+size]
	dst = appendUnescapedJSON(dst, raw)
	n := len(dst) - at - size
	if want := mpStrHeaderSize(n); want < size {
		copy(dst[at+want:], dst[at+size:])
		dst = dst[:at+want+n]
		size = want
	}
	mpPutStrHeader(dst[at:], size, n)
	return dst, end, nil
}

// appendMPNumber converts a JSON number literal already checked by
// skipJSONNumber.
func appendMPNumber(dst, lit []byte) ([]byte, error) {
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
		if u, ok := parseUint(digits); ok {
			switch {
			case !neg && u <= math.MaxInt64:
				return mpAppendUint(dst, u), nil
			case neg && u <= 1<<63:
				return mpAppendInt(dst, int64(-u)), nil
			}
		}
	}
	f, err := strconv.ParseFloat(bstr(lit), 64)
	if err != nil {
		return dst, errNumRange
	}
	if f == math.Trunc(f) && f >= -1<<63 && f < 1<<63 {
		return mpAppendInt(dst, int64(f)), nil
	}
	return mpAppendFloat64(dst, f), nil
}

func mpToJSON(dst, p []byte, i, depth int) ([]byte, int, error) {
	h, err := mpHead(p, i)
	if err != nil {
		return dst, 0, err
	}
	next := i + h.size
	switch h.kind {
	case mpNil:
		return append(dst, "null"...), next, nil
	case mpFalse:
		return append(dst, "false"...), next, nil
	case mpTrue:
		return append(dst, "true"...), next, nil
	case mpInt, mpUint:
		v, u, big := mpIntValue(p, i, h)
		if big {
			return strconv.AppendUint(dst, u, 10), next, nil
		}
		return strconv.AppendInt(dst, v, 10), next, nil
	case mpFloat32:
		f := math.Float32frombits(uint32(p[i+1])<<24 | uint32(p[i+2])<<16 | uint32(p[i+3])<<8 | uint32(p[i+4]))
		dst, err = appendJSONFloat(dst, float64(f), 32)
		return dst, next, err
	case mpFloat64:
		var bits uint64
		for _, b := range p[i+1 : i+9] {
			bits = bits<<8 | uint64(b)
		}
		dst, err = appendJSONFloat(dst, math.Float64frombits(bits), 64)
		return dst, next, err
	case mpStr:
		end := next + h.n
		return appendJSONString(dst, bstr(p[next:end])), end, nil
	case mpBin:
		end := next + h.n
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, p[next:end])
		return append(dst, '"'), end, nil
	case mpArray, mpMap:
		if depth >= maxDepth {
			return dst, 0, errJSONDepth
		}
		isMap := h.kind == mpMap
		if isMap {
			dst = append(dst, '{')
		} else {
			dst = append(dst, '[')
		}
		i = next
		for k := 0; k < h.n; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			if isMap {
				kh, err := mpHead(p, i)
				if err != nil {
					return dst, 0, err
				}
				if kh.kind != mpStr {
					return dst, 0, errMPMapKey
				}
				end := i + kh.size + kh.n
				dst = appendJSONString(dst, bstr(p[i+kh.size:end]))
				dst = append(dst, ':')
				i = end
			}
			if dst, i, err = mpToJSON(dst, p, i, depth+1); err != nil {
				return dst, 0, err
			}
		}
		if isMap {
			return append(dst, '}'), i, nil
		}
		return append(dst, ']'), i, nil
	case mpExt:
		return dst, 0, errMPExt
	}
	return dst, 0, errMPSyntax
}

// appendJSONFloat formats f as encoding/json does: shortest repr, exponent
// form outside [1e-6, 1e21), and "e-07" trimmed to "e-7".
func appendJSONFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, errMPNaN
	}
	fmt := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			fmt = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, fmt, -1, bits)
	if fmt == 'e' {
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}
