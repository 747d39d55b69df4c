package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"testing"
)

// mpKV is an ordered map entry for mpTestEncode, so tests control key order and
// can write duplicate or non-string keys.
type mpKV struct {
	k any
	v any
}

// mpTestExt encodes as an ext value in tests.
type mpTestExt struct {
	typ  int8
	data []byte
}

// mpTestEncode is an independent, reflection-light MessagePack encoder for tests.
func mpTestEncode(v any) []byte { return mpTestEnc(nil, v) }

func mpTestEnc(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0)
	case bool:
		if x {
			return append(b, 0xc3)
		}
		return append(b, 0xc2)
	case int:
		return mpAppendInt(b, int64(x))
	case int64:
		return mpAppendInt(b, x)
	case uint64:
		return mpAppendUint(b, x)
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0xca), math.Float32bits(x))
	case float64:
		return mpAppendFloat64(b, x)
	case string:
		return mpAppendStr(b, x)
	case []byte:
		switch n := len(x); {
		case n <= math.MaxUint8:
			b = append(b, 0xc4, byte(n))
		case n <= math.MaxUint16:
			b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
		default:
			b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
		}
		return append(b, x...)
	case mpTestExt:
		switch len(x.data) {
		case 1, 2, 4, 8, 16:
			b = append(b, 0xd4+byte(mpTestLog2(len(x.data))))
		default:
			b = append(b, 0xc7, byte(len(x.data)))
		}
		return append(append(b, byte(x.typ)), x.data...)
	case []any:
		b = mpAppendArrayHeader(b, len(x))
		for _, e := range x {
			b = mpTestEnc(b, e)
		}
		return b
	case []mpKV:
		b = mpAppendMapHeader(b, len(x))
		for _, e := range x {
			b = mpTestEnc(mpTestEnc(b, e.k), e.v)
		}
		return b
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = mpAppendMapHeader(b, len(x))
		for _, k := range keys {
			b = mpTestEnc(mpAppendStr(b, k), x[k])
		}
		return b
	}
	panic(fmt.Sprintf("mpTestEncode: unsupported %T", v))
}

func mpTestLog2(n int) int {
	i := 0
	for n > 1 {
		n >>= 1
		i++
	}
	return i
}

var errMPTest = errors.New("test msgpack decode error")

// mpTestDecode decodes one value into the shapes encoding/json produces for
// `any` (numbers stay int64/uint64/float64; normalize before comparing).
// Written from the spec independently of mpHead.
func mpTestDecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errMPTest
	}
	c := b[0]
	b = b[1:]
	need := func(n int) ([]byte, error) {
		if len(b) < n {
			return nil, errMPTest
		}
		r := b[:n]
		b = b[n:]
		return r, nil
	}
	ln := func(w int) (int, error) {
		r, err := need(w)
		if err != nil {
			return 0, err
		}
		switch w {
		case 1:
			return int(r[0]), nil
		case 2:
			return int(binary.BigEndian.Uint16(r)), nil
		}
		return int(binary.BigEndian.Uint32(r)), nil
	}
	seq := func(n int, isMap bool) (any, []byte, error) {
		if isMap {
			m := map[string]any{}
			for range n {
				k, rest, err := mpTestDecode(b)
				if err != nil {
					return nil, nil, err
				}
				ks, ok := k.(string)
				if !ok {
					return nil, nil, errMPTest
				}
				v, rest, err := mpTestDecode(rest)
				if err != nil {
					return nil, nil, err
				}
				m[ks], b = v, rest
			}
			return m, b, nil
		}
		a := []any{}
		for range n {
			v, rest, err := mpTestDecode(b)
			if err != nil {
				return nil, nil, err
			}
			a, b = append(a, v), rest
		}
		return a, b, nil
	}
	str := func(n int, bin bool) (any, []byte, error) {
		r, err := need(n)
		if err != nil {
			return nil, nil, err
		}
		if bin {
			return append([]byte{}, r...), b, nil
		}
		return string(r), b, nil
	}
	switch {
	case c <= 0x7f:
		return int64(c), b, nil
	case c >= 0xe0:
		return int64(int8(c)), b, nil
	case c <= 0x8f:
		return seq(int(c&0xf), true)
	case c <= 0x9f:
		return seq(int(c&0xf), false)
	case c <= 0xbf:
		return str(int(c&0x1f), false)
	}
	var err error
	var n int
	var r []byte
	switch c {
	case 0xc0:
		return nil, b, nil
	case 0xc2:
		return false, b, nil
	case 0xc3:
		return true, b, nil
	case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb:
		w := map[byte]int{0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4}[c]
		if n, err = ln(w); err != nil {
			return nil, nil, err
		}
		return str(n, c < 0xd0)
	case 0xca:
		if r, err = need(4); err != nil {
			return nil, nil, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(r))), b, nil
	case 0xcb:
		if r, err = need(8); err != nil {
			return nil, nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(r)), b, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		if r, err = need(1 << (c - 0xcc)); err != nil {
			return nil, nil, err
		}
		var u uint64
		for _, x := range r {
			u = u<<8 | uint64(x)
		}
		if u > math.MaxInt64 {
			return u, b, nil
		}
		return int64(u), b, nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		if r, err = need(1 << (c - 0xd0)); err != nil {
			return nil, nil, err
		}
		var u uint64
		for _, x := range r {
			u = u<<8 | uint64(x)
		}
		shift := 64 - 8*len(r)
		return int64(u<<shift) >> shift, b, nil
	case 0xdc, 0xdd, 0xde, 0xdf:
		if n, err = ln(2 << ((c - 0xdc) & 1)); err != nil {
			return nil, nil, err
		}
		return seq(n, c >= 0xde)
	}
	return nil, nil, errMPTest // ext and 0xc1 are not needed by tests
}

func TestMsgpackTestHelpers(t *testing.T) {
	v := map[string]any{"a": []any{int64(1), int64(-200), "x", nil, true}, "b": 1.5}
	got, rest, err := mpTestDecode(mpTestEncode(v))
	if err != nil || len(rest) != 0 || fmt.Sprint(got) != fmt.Sprint(v) {
		t.Fatalf("helpers disagree: %v %v %v", got, rest, err)
	}
}

func TestDecodeMsgpack(t *testing.T) {
	data := map[string]any{"text": "hi", "n": []any{1, 2.5, nil, false, []byte{1, 2}}}
	tests := []struct {
		name string
		in   []mpKV
		want Envelope
		err  error
	}{
		{name: "message", in: []mpKV{{"type", "message"}, {"room", "lobby"}, {"data", data}, {"id", "c1"}},
			want: Envelope{Type: TypeMessage, Room: []byte("lobby"), Data: mpTestEncode(data), ID: []byte("c1")}},
		{name: "all fields", in: []mpKV{{"type", "publish"}, {"channel", "prices.btc"}, {"data", 1}, {"priority", "high"},
			{"filter", map[string]any{"region": "eu"}}, {"token", "t"}, {"to", "bob"}, {"since", uint64(1 << 40)}, {"extra", []any{map[string]any{"x": mpTestExt{typ: 1, data: []byte{1, 2, 3, 4}}}}}},
			want: Envelope{Type: TypePublish, Channel: []byte("prices.btc"), Data: []byte{1}, Priority: PriorityHigh,
				Filter: mpTestEncode(map[string]any{"region": "eu"}), Token: []byte("t"), To: []byte("bob"), Since: 1 << 40, HasSince: true}},
		{name: "nil is absent", in: []mpKV{{"type", "ping"}, {"room", nil}, {"since", nil}, {"priority", nil}, {"filter", nil}, {"data", nil}},
			want: Envelope{Type: TypePing, Data: []byte{0xc0}}},
		{name: "last wins", in: []mpKV{{"type", "join"}, {"room", "a"}, {"room", "b"}}, want: Envelope{Type: TypeJoin, Room: []byte("b")}},
		{name: "since max", in: []mpKV{{"type", "resume"}, {"since", uint64(math.MaxUint64)}}, want: Envelope{Type: TypeResume, Since: math.MaxUint64, HasSince: true}},
		{name: "missing type", in: []mpKV{{"room", "a"}}, want: Envelope{Room: []byte("a")}, err: ErrMissingType},
		{name: "unknown type", in: []mpKV{{"type", "nope"}}, err: errUnknownType},
		{name: "room int", in: []mpKV{{"type", "join"}, {"room", 5}}, err: errRoomNotStr},
		{name: "room bin", in: []mpKV{{"type", "join"}, {"room", []byte("x")}}, err: errRoomNotStr},
		{name: "int key", in: []mpKV{{1, "join"}}, err: errMPKey},
		{name: "since negative", in: []mpKV{{"type", "resume"}, {"since", -1}}, err: errBadSince},
		{name: "since float", in: []mpKV{{"type", "resume"}, {"since", 1.0}}, err: errBadSince},
		{name: "bad priority", in: []mpKV{{"type", "message"}, {"priority", "urgent"}}, err: errBadPriority},
		{name: "filter array", in: []mpKV{{"type", "publish"}, {"filter", []any{}}}, err: errBadFilterRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Envelope
			err := DecodeMsgpack(mpTestEncode(tt.in), &e)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil || err == ErrMissingType {
				assertEnvelopeEqual(t, &e, &tt.want)
			}
		})
	}
}

func TestDecodeMsgpackMalformed(t *testing.T) {
	valid := mpTestEncode([]mpKV{{"type", "message"}, {"room", "lobby"}, {"data", map[string]any{"a": []any{"x", 1.5, []byte{9}}}}})
	for n := 0; n < len(valid); n++ {
		var e Envelope
		if err := DecodeMsgpack(valid[:n], &e); err == nil {
			t.Fatalf("prefix %d decoded without error", n)
		}
	}
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{name: "not a map", in: mpTestEncode([]any{}), err: errMPNotMap},
		{name: "trailing", in: append(mpTestEncode([]mpKV{{"type", "ping"}}), 0xc0), err: errMPTrailing},
		{name: "0xc1", in: []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc1}, err: errMPSyntax},
		{name: "map32 forged", in: []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'x', 0xc0}, err: errMPEOF},
		{name: "str32 forged", in: []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'}, err: errMPEOF},
		{name: "nested array forged", in: []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff}, err: errMPEOF},
		{name: "ext8 no type", in: []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc7, 0x00}, err: errMPEOF},
	}
	for _, tt := range tests {
		var e Envelope
		if err := DecodeMsgpack(tt.in, &e); err != tt.err {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
	}
}

// TestMsgpackSkipAllFormats checks that data of every format is captured raw.
func TestMsgpackSkipAllFormats(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 70000)
	values := []any{
		nil, true, false, 0, 127, -1, -32, -33, 200, 40000, 1 << 20, int64(1) << 40, uint64(math.MaxUint64),
		-200, -40000, -(1 << 20), int64(-1) << 40, float32(1.5), 2.5,
		"", "short", string(long[:40]), string(long[:300]), string(long),
		[]byte{}, []byte("bin"), long[:300], long,
		mpTestExt{typ: 1, data: []byte{1}}, mpTestExt{typ: 2, data: make([]byte, 16)}, mpTestExt{typ: 3, data: []byte{1, 2, 3}},
		make([]any, 20), []any{[]any{[]any{}}}, map[string]any{"k": map[string]any{}},
	}
	big := make([]mpKV, 70000)
	for i := range big {
		big[i] = mpKV{k: fmt.Sprint(i), v: i}
	}
	values = append(values, big, []any(make([]any, 70000)))
	for i, v := range values {
		raw := mpTestEncode(v)
		var e Envelope
		msg := mpAppendStr(mpAppendStr([]byte{0x83}, "type"), "message")
		msg = append(mpAppendStr(msg, "data"), raw...)
		msg = mpAppendStr(mpAppendStr(msg, "room"), "r")
		if err := DecodeMsgpack(msg, &e); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if !bytes.Equal(e.Data, raw) || string(e.Room) != "r" {
			t.Fatalf("value %d: data not captured raw", i)
		}
	}
}

func TestDecodeMsgpackAllocs(t *testing.T) {
	msg := mpTestEncode([]mpKV{{"type", "message"}, {"room", "lobby"}, {"data", map[string]any{"text": "hi"}}, {"id", "c1"}})
	var e Envelope
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeMsgpack(msg, &e); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("DecodeMsgpack allocates %.1f times per call", allocs)
	}
}

func FuzzDecodeMsgpack(f *testing.F) {
	f.Add(mpTestEncode([]mpKV{{"type", "message"}, {"room", "lobby"}, {"data", map[string]any{"text": "hi"}}}))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		var e Envelope
		err := DecodeMsgpack(p, &e)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
				t.Fatalf("error %v is not a bad_request", err)
			}
			return
		}
		if e.Data != nil {
			if end, err := mpSkip(e.Data, 0); err != nil || end != len(e.Data) {
				t.Fatalf("data not one value")
			}
		}
	})
}

func BenchmarkDecodeMsgpack(b *testing.B) {
	msg := mpTestEncode([]mpKV{{"type", "message"}, {"room", "lobby"}, {"data", map[string]any{"text": "hi"}}, {"id", "c1"}})
	var e Envelope
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := DecodeMsgpack(msg, &e); err != nil {
			b.Fatal(err)
		}
	}
}
