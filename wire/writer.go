package wire

import (
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file holds objWriter, the encoding-parallel writer behind the Codec
// reply methods (reply.go). It writes one flat object with the primitives of
// the connection's encoding (json.go, msgpack.go, cbor.go); a new encoding adds its
// case to each method here.

// objWriter writes one flat object in the codec c. Keys are constants
// without characters that need escaping. For MessagePack it reserves a fixmap
// header and patches the count at the end, so an object has at most 15 fields
// (every reply in reply.go has fewer than 9). Every method branches on c:
// JSON is the default, and a new encoding adds its branch to each.
type objWriter struct {
	b   []byte
	hdr int
	n   int
	c   Codec
}

func beginObj(c Codec, dst []byte, typ string) objWriter {
	if c == CodecCBOR {
		return cbBeginObj(dst, typ)
	}
	w := objWriter{b: dst, c: c}
	if w.c == CodecProtobuf {
		w.pbStr("type", typ)
	} else if w.c == CodecMsgpack {
		w.hdr = len(dst)
		w.b = append(w.b, 0x80, 0xa4, 't', 'y', 'p', 'e')
		w.b = mpAppendStr(w.b, typ)
	} else {
		w.b = append(w.b, `{"type":`...)
		w.b = appendJSONString(w.b, typ)
	}
	w.n = 1
	return w
}

func (w *objWriter) key(k string) {
	if w.c == CodecCBOR {
		w.cbKey(k)
		return
	}
	w.n++
	if w.c == CodecMsgpack {
		w.b = mpAppendStr(w.b, k)
		return
	}
	w.b = append(w.b, ',', '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *objWriter) sstr(k, v string) {
	if w.c == CodecProtobuf {
		w.pbStr(k, v)
		return
	}
	if w.c == CodecCBOR {
		w.cbSstr(k, v)
		return
	}
	w.key(k)
	if w.c == CodecMsgpack {
		w.b = mpAppendStr(w.b, v)
	} else {
		w.b = appendJSONString(w.b, v)
	}
}

func (w *objWriter) bstr(k string, v []byte) { w.sstr(k, bstr(v)) }

func (w *objWriter) clientID(id []byte) {
	if len(id) > 0 {
		w.bstr("id", id)
	}
}

func (w *objWriter) int(k string, v int64) {
	if w.c == CodecProtobuf {
		w.pbVarint(k, uint64(v))
		return
	}
	if w.c == CodecCBOR {
		w.cbInt(k, v)
		return
	}
	w.key(k)
	if w.c == CodecMsgpack {
		w.b = mpAppendInt(w.b, v)
	} else {
		w.b = appendInt(w.b, v)
	}
}

func (w *objWriter) uint(k string, v uint64) {
	if w.c == CodecProtobuf {
		w.pbVarint(k, v)
		return
	}
	if w.c == CodecCBOR {
		w.cbUint(k, v)
		return
	}
	w.key(k)
	if w.c == CodecMsgpack {
		w.b = mpAppendUint(w.b, v)
	} else {
		w.b = appendUint(w.b, v)
	}
}

func (w *objWriter) bool(k string, v bool) {
	if w.c == CodecProtobuf {
		w.pbVarint(k, protowire.EncodeBool(v))
		return
	}
	if w.c == CodecCBOR {
		w.cbBool(k, v)
		return
	}
	w.key(k)
	switch {
	case w.c == CodecMsgpack && v:
		w.b = append(w.b, 0xc3)
	case w.c == CodecMsgpack:
		w.b = append(w.b, 0xc2)
	case v:
		w.b = append(w.b, "true"...)
	default:
		w.b = append(w.b, "false"...)
	}
}

// raw appends an already encoded value; empty means null.
func (w *objWriter) raw(k string, v []byte) {
	if w.c == CodecProtobuf {
		w.pbRaw(k, v)
		return
	}
	if w.c == CodecCBOR {
		w.cbRaw(k, v)
		return
	}
	w.key(k)
	switch {
	case len(v) > 0:
		w.b = append(w.b, v...)
	case w.c == CodecMsgpack:
		w.b = append(w.b, 0xc0)
	default:
		w.b = append(w.b, "null"...)
	}
}

func (w *objWriter) strs(k string, vs []string) {
	if w.c == CodecProtobuf {
		w.pbStrs(k, vs)
		return
	}
	if w.c == CodecCBOR {
		w.cbStrs(k, vs)
		return
	}
	w.key(k)
	if w.c == CodecMsgpack {
		w.b = mpAppendArrayHeader(w.b, len(vs))
		for _, v := range vs {
			w.b = mpAppendStr(w.b, v)
		}
		return
	}
	w.b = append(w.b, '[')
	for i, v := range vs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendJSONString(w.b, v)
	}
	w.b = append(w.b, ']')
}

func (w *objWriter) end() []byte {
	if w.c == CodecProtobuf {
		return w.b
	}
	if w.c == CodecCBOR {
		return w.cbEnd()
	}
	if w.c == CodecMsgpack {
		w.b[w.hdr] = 0x80 | byte(w.n)
		return w.b
	}
	return append(w.b, '}')
}

// bstr views b as a string without copying, for transient reads only (the
// result must not be retained past the call it is passed to).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
