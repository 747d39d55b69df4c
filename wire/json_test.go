package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func assertEnvelopeEqual(t *testing.T, got, want *Envelope) {
	t.Helper()
	type field struct {
		name      string
		got, want []byte
	}
	for _, f := range []field{
		{name: "ID", got: got.ID, want: want.ID},
		{name: "Token", got: got.Token, want: want.Token},
		{name: "Room", got: got.Room, want: want.Room},
		{name: "Channel", got: got.Channel, want: want.Channel},
		{name: "To", got: got.To, want: want.To},
		{name: "Data", got: got.Data, want: want.Data},
		{name: "Filter", got: got.Filter, want: want.Filter},
	} {
		if !bytes.Equal(f.got, f.want) || (f.got == nil) != (f.want == nil) {
			t.Errorf("%s = %q (nil %v), want %q (nil %v)", f.name, f.got, f.got == nil, f.want, f.want == nil)
		}
	}
	if got.Type != want.Type || got.Priority != want.Priority || got.Since != want.Since || got.HasSince != want.HasSince {
		t.Errorf("type/priority/since = %v/%v/%d/%v, want %v/%v/%d/%v", got.Type, got.Priority, got.Since, got.HasSince,
			want.Type, want.Priority, want.Since, want.HasSince)
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Envelope
		err  error
	}{
		{name: "typical", in: `{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`,
			want: Envelope{Type: TypeMessage, Room: []byte("lobby"), Data: []byte(`{"text":"hi"}`), ID: []byte("c1")}},
		{name: "whitespace", in: " \r\n\t{ \"type\" : \"join\" ,\n\"room\"\t:\"a\" } \n",
			want: Envelope{Type: TypeJoin, Room: []byte("a")}},
		{name: "all fields", in: `{"type":"publish","channel":"prices.btc","data":[1,2.5e-3,"x",null,true,false,{}],"priority":"low",` +
			`"filter":{"tag":"region","in":["eu"]},"token":"tok","to":"bob","since":18446744073709551615}`,
			want: Envelope{Type: TypePublish, Channel: []byte("prices.btc"), Data: []byte(`[1,2.5e-3,"x",null,true,false,{}]`),
				Priority: PriorityLow, Filter: []byte(`{"tag":"region","in":["eu"]}`), Token: []byte("tok"), To: []byte("bob"),
				Since: 1<<64 - 1, HasSince: true}},
		{name: "unknown fields skipped", in: `{"x":{"a":[1,{"b":"\"}"}],"c":-0.5E+2},"type":"ping","from":"mallory","user":"u","y":[]}`,
			want: Envelope{Type: TypePing}},
		{name: "escapes", in: `{"type":"auth","token":"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00"}`,
			want: Envelope{Type: TypeAuth, Token: []byte("a\"b\\c/d\b\f\n\r\tA\u00e9\u20ac\U0001F600")}},
		{name: "lone surrogates", in: `{"type":"auth","token":"\ud83d-\ude00-\ud83d\u0041"}`,
			want: Envelope{Type: TypeAuth, Token: []byte("\uFFFD-\uFFFD-\uFFFDA")}},
		{name: "escaped key", in: `{"\u0074ype":"join","ro\u006fm":"r"}`, want: Envelope{Type: TypeJoin, Room: []byte("r")}},
		{name: "nulls are absent", in: `{"type":"join","room":null,"since":null,"priority":null,"filter":null,"data":null}`,
			want: Envelope{Type: TypeJoin, Data: []byte("null")}},
		{name: "empty string present", in: `{"type":"join","room":""}`, want: Envelope{Type: TypeJoin, Room: []byte{}}},
		{name: "last wins", in: `{"type":"join","room":"a","room":"b","type":"leave"}`, want: Envelope{Type: TypeLeave, Room: []byte("b")}},
		{name: "data string raw", in: `{"type":"message","data":"a\nb"}`, want: Envelope{Type: TypeMessage, Data: []byte(`"a\nb"`)}},
		{name: "missing type", in: `{"room":"x"}`, want: Envelope{Room: []byte("x")}, err: ErrMissingType},
		{name: "empty object", in: `{}`, err: ErrMissingType},
		{name: "null type", in: `{"type":null}`, err: ErrMissingType},
		{name: "unknown type", in: `{"type":"nope"}`, err: errUnknownType},
		{name: "type number", in: `{"type":1}`, err: errTypeNotStr},
		{name: "room number", in: `{"type":"join","room":5}`, err: errRoomNotStr},
		{name: "room object", in: `{"type":"join","room":{}}`, err: errRoomNotStr},
		{name: "id number", in: `{"type":"ping","id":7}`, err: errIDNotStr},
		{name: "priority bad", in: `{"type":"message","priority":"urgent"}`, err: errBadPriority},
		{name: "priority number", in: `{"type":"message","priority":1}`, err: errPriorityNotStr},
		{name: "since negative", in: `{"type":"resume","since":-1}`, err: errBadSince},
		{name: "since float", in: `{"type":"resume","since":1.5}`, err: errBadSince},
		{name: "since exp", in: `{"type":"resume","since":1e3}`, err: errBadSince},
		{name: "since overflow", in: `{"type":"resume","since":18446744073709551616}`, err: errBadSince},
		{name: "since string", in: `{"type":"resume","since":"1"}`, err: errBadSince},
		{name: "filter array", in: `{"type":"publish","filter":[1]}`, err: errBadFilterRaw},
		{name: "not object", in: `["type"]`, err: errJSONNotObj},
		{name: "empty", in: ``, err: errJSONNotObj},
		{name: "trailing", in: `{"type":"ping"}x`, err: errJSONTrailing},
		{name: "two objects", in: `{"type":"ping"}{}`, err: errJSONTrailing},
		{name: "trailing comma", in: `{"type":"ping",}`, err: errJSONSyntax},
		{name: "missing colon", in: `{"type" "ping"}`, err: errJSONSyntax},
		{name: "single quotes", in: `{'type':'ping'}`, err: errJSONSyntax},
		{name: "truncated", in: `{"type":"ping"`, err: errJSONEOF},
		{name: "truncated string", in: `{"type":"pi`, err: errJSONEOF},
		{name: "bad escape", in: `{"type":"p\x"}`, err: errJSONString},
		{name: "bad unicode escape", in: `{"type":"p\u12g4"}`, err: errJSONString},
		{name: "control char", in: "{\"type\":\"p\ni\"}", err: errJSONString},
		{name: "bad data", in: `{"type":"message","data":{"a":}}`, err: errJSONSyntax},
		{name: "bad number", in: `{"type":"message","data":01}`, err: errJSONSyntax},
		{name: "bad number dot", in: `{"type":"message","data":1.}`, err: errJSONSyntax},
		{name: "bad literal", in: `{"type":"message","data":tru}`, err: errJSONSyntax},
		{name: "NaN", in: `{"type":"message","data":NaN}`, err: errJSONSyntax},
		{name: "deep", in: `{"type":"message","data":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, err: errJSONDepth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Envelope
			err := DecodeJSON([]byte(tt.in), &e)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil || err == ErrMissingType {
				assertEnvelopeEqual(t, &e, &tt.want)
			}
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
					t.Fatalf("error %v is not a bad_request ProtocolError", err)
				}
			}
		})
	}
}

func TestDecodeJSONMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		`{"type":"join","room":"\u00e9\ud800x\udfff\ud83d\ude00","id":"\"\\\/"}`,
		`{"type":"join","room":"plain","id":"\t\u0000\u001f"}`,
	}
	for _, in := range inputs {
		var e Envelope
		if err := DecodeJSON([]byte(in), &e); err != nil {
			t.Fatal(err)
		}
		var ref struct{ Room, ID string }
		if err := json.Unmarshal([]byte(in), &ref); err != nil {
			t.Fatal(err)
		}
		if string(e.Room) != ref.Room || string(e.ID) != ref.ID {
			t.Errorf("%s: got %q %q, encoding/json %q %q", in, e.Room, e.ID, ref.Room, ref.ID)
		}
	}
}

// TestDecodeJSONScratchReuse checks that escaped strings from one decode are
// intact within that decode, and that reuse does not leak old fields.
func TestDecodeJSONScratchReuse(t *testing.T) {
	var e Envelope
	first := `{"type":"send","to":"b\u006fb","id":"\u0031\u0032","token":"` + strings.Repeat(`\n`, 100) + `"}`
	if err := DecodeJSON([]byte(first), &e); err != nil {
		t.Fatal(err)
	}
	if string(e.To) != "bob" || string(e.ID) != "12" || string(e.Token) != strings.Repeat("\n", 100) {
		t.Fatalf("got %q %q %q", e.To, e.ID, e.Token)
	}
	if err := DecodeJSON([]byte(`{"type":"join","room":"\u0072"}`), &e); err != nil {
		t.Fatal(err)
	}
	if string(e.Room) != "r" || e.To != nil || e.ID != nil || e.Token != nil {
		t.Fatalf("stale fields after reuse: %+v", e)
	}
}

func TestDecodeJSONAllocs(t *testing.T) {
	msgs := []string{
		`{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`,
		`{"type":"message","room":"lo\u0062by","data":{"text":"hi\n"},"id":"c\"1"}`,
	}
	for _, m := range msgs {
		p := []byte(m)
		var e Envelope
		allocs := testing.AllocsPerRun(100, func() {
			if err := DecodeJSON(p, &e); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("DecodeJSON(%s) allocates %.1f times per call", m, allocs)
		}
	}
	var e Envelope
	bad := []byte(`{"type":"message","room":5}`)
	if allocs := testing.AllocsPerRun(100, func() { _ = DecodeJSON(bad, &e) }); allocs != 0 {
		t.Errorf("DecodeJSON error path allocates %.1f times", allocs)
	}
}

func TestValidJSON(t *testing.T) {
	for _, in := range []string{
		`0`, `-0`, `1.5e+10`, `"x"`, `[]`, `{}`, ` [1 , {"a" : [ ] } ] `, `null`, `true`, `false`, `"\ud800"`,
		``, ` `, `01`, `-`, `1.`, `.5`, `1e`, `+1`, `[1,]`, `{"a"}`, `{"a":1,}`, `{1:2}`, `[`, `"`, `"\`, `nul`, `[]]`,
		"\"\x01\"", `"\u123"`, `Infinity`, `1 2`,
	} {
		if got, want := ValidJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("ValidJSON(%q) = %v, encoding/json says %v", in, got, want)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`,
		`{"type":"resume","room":"r","since":12}`,
		`{"type":"publish","channel":"c","data":[1,"\u00e9"],"filter":{"tag":"a","in":["x"]}}`,
		`{"type":"auth","token":"a\ud83d\ude00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var e Envelope
		err := DecodeJSON(p, &e)
		valid := json.Valid(p)
		if err == nil || err == ErrMissingType {
			if !valid {
				t.Fatalf("accepted invalid JSON %q", p)
			}
			if e.Data != nil && !json.Valid(e.Data) {
				t.Fatalf("data %q not valid JSON", e.Data)
			}
			if utf8.Valid(p) {
				var ref map[string]any
				if json.Unmarshal(p, &ref) == nil {
					if s, ok := ref["room"].(string); ok && s != string(e.Room) {
						t.Fatalf("room %q, encoding/json %q", e.Room, s)
					}
				}
			}
			return
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
			t.Fatalf("error %v is not a bad_request", err)
		}
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	msg := []byte(`{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`)
	var e Envelope
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := DecodeJSON(msg, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJSONStdlib is the encoding/json baseline for comparison.
func BenchmarkDecodeJSONStdlib(b *testing.B) {
	msg := []byte(`{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`)
	var v struct {
		Type, Room, ID string
		Data           json.RawMessage
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(msg, &v); err != nil {
			b.Fatal(err)
		}
	}
}
