package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestJSONToMsgpack(t *testing.T) {
	tests := []struct {
		in   string
		want any    // decoded by mpTestDecode, before normalize
		raw  []byte // exact bytes, when given
	}{
		{in: `null`, raw: []byte{0xc0}},
		{in: ` true `, raw: []byte{0xc3}},
		{in: `false`, raw: []byte{0xc2}},
		{in: `0`, raw: []byte{0x00}},
		{in: `-0`, raw: []byte{0x00}},
		{in: `127`, raw: []byte{0x7f}},
		{in: `128`, raw: []byte{0xcc, 0x80}},
		{in: `-32`, raw: []byte{0xe0}},
		{in: `-33`, raw: []byte{0xd0, 0xdf}},
		{in: `65536`, raw: []byte{0xce, 0, 1, 0, 0}},
		{in: `9223372036854775807`, want: int64(math.MaxInt64)},
		{in: `-9223372036854775808`, want: int64(math.MinInt64)},
		{in: `9223372036854775808`, want: float64(1 << 63)},
		{in: `18446744073709551616`, want: float64(1 << 64)},
		{in: `1.0`, raw: []byte{0x01}},
		{in: `1e3`, want: int64(1000)},
		{in: `-2.5E-3`, want: -0.0025},
		{in: `1.5`, raw: []byte{0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}},
		{in: `1e300`, want: 1e300},
		{in: `""`, raw: []byte{0xa0}},
		{in: `"hi"`, raw: []byte{0xa2, 'h', 'i'}},
		{in: `"a\nb\u00e9\ud83d\ude00"`, want: "a\nb\u00e9\U0001F600"},
		{in: `"\ud83d"`, want: "\uFFFD"},
		{in: `[]`, raw: []byte{0x90}},
		{in: `{}`, raw: []byte{0x80}},
		{in: `[1,[2,[3]],{"a":{"b":null}}]`, want: []any{int64(1), []any{int64(2), []any{int64(3)}}, map[string]any{"a": map[string]any{"b": nil}}}},
		{in: `{"k\"ey":"v","n":-1}`, want: map[string]any{"k\"ey": "v", "n": int64(-1)}},
	}
	for _, tt := range tests {
		got, err := JSONToMsgpack([]byte("pre"), []byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if !bytes.HasPrefix(got, []byte("pre")) {
			t.Fatalf("%s: dst not appended to", tt.in)
		}
		got = got[3:]
		if tt.raw != nil && !bytes.Equal(got, tt.raw) {
			t.Errorf("%s: got % x, want % x", tt.in, got, tt.raw)
		}
		if tt.want != nil {
			v, rest, err := mpTestDecode(got)
			if err != nil || len(rest) != 0 || !reflect.DeepEqual(v, tt.want) {
				t.Errorf("%s: decoded %#v (%v), want %#v", tt.in, v, err, tt.want)
			}
		}
	}
}

func TestJSONToMsgpackErrors(t *testing.T) {
	for _, in := range []string{``, ` `, `{`, `[1,]`, `{"a"}`, `01`, `1e400`, `-1e400`, `"\x"`, `nul`, `[] []`, `NaN`,
		strings.Repeat("[", 257) + strings.Repeat("]", 257), "\"\x01\""} {
		dst := []byte("keep")
		got, err := JSONToMsgpack(dst, []byte(in))
		if err == nil {
			t.Errorf("%q: no error", in)
		}
		if string(got) != "keep" {
			t.Errorf("%q: dst changed to %q on error", in, got)
		}
	}
}

// TestJSONToMsgpackWideHeaders covers containers and escaped strings whose
// headers must widen or shrink.
func TestJSONToMsgpackWideHeaders(t *testing.T) {
	for _, n := range []int{15, 16, 65536} {
		arr := "[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]"
		obj := make([]string, n)
		for i := range obj {
			obj[i] = `"k` + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + testItoa(i) + `":` + testItoa(i)
		}
		ins := []string{arr, "{" + strings.Join(obj, ",") + "}"}
		if n > 100 { // too slow for the stdlib comparison under -race: check shape only
			for i, in := range ins {
				mp, err := JSONToMsgpack(nil, []byte(in))
				if err != nil || mp[0] != []byte{0xdd, 0xdf}[i] {
					t.Fatalf("%d elements: header % x, %v", n, mp[:min(5, len(mp))], err)
				}
				v, rest, err := mpTestDecode(mp)
				if err != nil || len(rest) != 0 || reflect.ValueOf(v).Len() != n {
					t.Fatalf("%d elements: decoded %v, %v", n, reflect.ValueOf(v).Kind(), err)
				}
			}
			continue
		}
		ins = append(ins, `{"a":`+arr+`,"b":[`+arr+`]}`)
		for _, in := range ins {
			checkTranscodeAgainstStdlib(t, []byte(in))
		}
	}
	for _, n := range []int{1, 30, 31, 32, 33, 100, 254, 255, 256, 300, 65535, 65536} {
		escapes := []string{`\n`, `\u00e9`, `\ud83d\ude00`}
		if n > 300 {
			escapes = escapes[2:] // the large sizes only test header widths
		}
		for _, esc := range escapes {
			// esc first, then padding so that the unescaped length crosses header sizes
			in := `["` + esc + strings.Repeat("y", n) + `","` + strings.Repeat(esc, n/6+1) + `"]`
			checkTranscodeAgainstStdlib(t, []byte(in))
		}
	}
}

func testItoa(i int) string { return string(appendInt(nil, int64(i))) }

// checkTranscodeAgainstStdlib converts JSON to msgpack and back and compares both
// with encoding/json's reading of the input.
func checkTranscodeAgainstStdlib(t testing.TB, in []byte) {
	t.Helper()
	var ref any
	refErr := json.Unmarshal(in, &ref)
	mp, err := JSONToMsgpack(nil, in)
	if err == errJSONDepth {
		return // encoding/json allows deeper nesting than the gateway does
	}
	if (err == nil) != (refErr == nil) {
		t.Fatalf("%.200q: error %v, encoding/json %v", in, err, refErr)
	}
	if err != nil {
		return
	}
	v, rest, derr := mpTestDecode(mp)
	if derr != nil || len(rest) != 0 {
		t.Fatalf("%.200q: produced bad msgpack % x", in, mp)
	}
	if got := normalizeNum(v); !reflect.DeepEqual(got, ref) {
		t.Fatalf("%.200q: msgpack holds %.200v, encoding/json %.200v", in, got, ref)
	}
	if end, err := mpSkip(mp, 0); err != nil || end != len(mp) {
		t.Fatalf("%.200q: mpSkip disagrees: %v", in, err)
	}
	back, err := MsgpackToJSON(nil, mp)
	if err != nil {
		t.Fatalf("%.200q: back to JSON: %v", in, err)
	}
	var ref2 any
	if err := json.Unmarshal(back, &ref2); err != nil || !reflect.DeepEqual(ref2, ref) {
		t.Fatalf("%.200q: round trip gave %.200s (%v)", in, back, err)
	}
}

func TestMsgpackToJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{in: nil, want: `null`},
		{in: true, want: `true`},
		{in: false, want: `false`},
		{in: -5, want: `-5`},
		{in: int64(math.MinInt64), want: `-9223372036854775808`},
		{in: uint64(math.MaxUint64), want: `18446744073709551615`},
		{in: 1.5, want: `1.5`},
		{in: 1e21, want: `1e+21`},
		{in: 1e-7, want: `1e-7`},
		{in: 100.0, want: `100`},
		{in: float32(0.1), want: `0.1`},
		{in: float32(1e-7), want: `1e-7`},
		{in: "a\"b\n<\u2028\xff", want: `"a\"b\n<\u2028\ufffd"`},
		{in: []byte{0, 1, 2, 0xff}, want: `"AAEC/w=="`},
		{in: []byte{}, want: `""`},
		{in: []any{}, want: `[]`},
		{in: []any{1, "x", []any{nil}}, want: `[1,"x",[null]]`},
		{in: []mpKV{{"b", 1}, {"a", map[string]any{}}}, want: `{"b":1,"a":{}}`},
	}
	for _, tt := range tests {
		got, err := MsgpackToJSON([]byte("pre"), mpTestEncode(tt.in))
		if err != nil || string(got) != "pre"+tt.want {
			t.Errorf("%#v: got %s (%v), want %s", tt.in, got, err, tt.want)
		}
	}
	errs := []struct {
		name string
		in   []byte
		err  error
	}{
		{name: "ext", in: mpTestEncode(mpTestExt{typ: -1, data: make([]byte, 8)}), err: errMPExt},
		{name: "nested ext", in: mpTestEncode([]any{mpTestExt{typ: 5, data: []byte{1, 2, 3}}}), err: errMPExt},
		{name: "NaN", in: mpTestEncode(math.NaN()), err: errMPNaN},
		{name: "Inf32", in: mpTestEncode(float32(math.Inf(1))), err: errMPNaN},
		{name: "int key", in: mpTestEncode([]mpKV{{1, 2}}), err: errMPMapKey},
		{name: "trailing", in: []byte{0xc0, 0xc0}, err: errMPTrailing},
		{name: "empty", in: nil, err: errMPEOF},
		{name: "truncated", in: mpTestEncode([]any{"abc"})[:3], err: errMPEOF},
		{name: "deep", in: append(bytes.Repeat([]byte{0x91}, 300), 0xc0), err: errJSONDepth},
		{name: "0xc1", in: []byte{0xc1}, err: errMPSyntax},
	}
	for _, tt := range errs {
		got, err := MsgpackToJSON([]byte("keep"), tt.in)
		if err != tt.err || string(got) != "keep" {
			t.Errorf("%s: got %q, %v; want %v", tt.name, got, err, tt.err)
		}
	}
}

func TestTranscodeDispatch(t *testing.T) {
	mp, err := Transcode(nil, []byte(`{"a":[1,"x"]}`), CodecJSON, CodecMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	js, err := Transcode(nil, mp, CodecMsgpack, CodecJSON)
	if err != nil || string(js) != `{"a":[1,"x"]}` {
		t.Fatalf("got %s, %v", js, err)
	}
	if _, err := Transcode(nil, js, CodecJSON, CodecJSON); err == nil {
		t.Fatal("same-codec transcode accepted")
	}
}

func TestTranscodeAllocs(t *testing.T) {
	in := []byte(`{"text":"hello \u00e9","n":[1,2.5,-3,true,null],"nested":{"k":"v"}}`)
	mp, _ := JSONToMsgpack(nil, in)
	buf := make([]byte, 0, 1024)
	if a := testing.AllocsPerRun(50, func() { buf, _ = JSONToMsgpack(buf[:0], in) }); a != 0 {
		t.Errorf("JSONToMsgpack: %.1f allocs", a)
	}
	if a := testing.AllocsPerRun(50, func() { buf, _ = MsgpackToJSON(buf[:0], mp) }); a != 0 {
		t.Errorf("MsgpackToJSON: %.1f allocs", a)
	}
}

// FuzzJSONToMsgpack compares the conversion with encoding/json's reading of
// the same input, for valid UTF-8 input (gw.json arrives in text frames,
// which are UTF-8 checked; encoding/json rewrites invalid bytes, we keep them).
func FuzzJSONToMsgpack(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		if !utf8.Valid(in) {
			if _, err := JSONToMsgpack(nil, in); err == nil && !json.Valid(in) {
				t.Fatalf("accepted invalid JSON %q", in)
			}
			return
		}
		checkTranscodeAgainstStdlib(t, in)
	})
}

// FuzzMsgpackToJSON checks that whatever is accepted becomes valid JSON, and
// that it then converts back to msgpack.
func FuzzMsgpackToJSON(f *testing.F) {
	f.Add(mpTestEncode(map[string]any{"a": []any{1, 2.5, "x", []byte{1}, nil, true}}))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		js, err := MsgpackToJSON(nil, in)
		if err != nil {
			return
		}
		if !json.Valid(js) || !utf8.Valid(js) {
			t.Fatalf("% x gave invalid JSON %q", in, js)
		}
		if _, err := JSONToMsgpack(nil, js); err != nil && err != errNumRange {
			t.Fatalf("%s does not convert back: %v", js, err)
		}
	})
}

func BenchmarkJSONToMsgpack(b *testing.B) {
	in := []byte(`{"text":"hello world","user":{"id":12345,"name":"alice","tags":["a","b"]},"score":98.6,"ok":true}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		buf, _ = JSONToMsgpack(buf[:0], in)
	}
}

func BenchmarkMsgpackToJSON(b *testing.B) {
	in, _ := JSONToMsgpack(nil, []byte(`{"text":"hello world","user":{"id":12345,"name":"alice","tags":["a","b"]},"score":98.6,"ok":true}`))
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		buf, _ = MsgpackToJSON(buf[:0], in)
	}
}
