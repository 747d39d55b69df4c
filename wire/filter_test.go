package wire

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	eu := map[string]string{"region": "eu", "tier": "gold"}
	us := map[string]string{"region": "us"}
	none := map[string]string(nil)
	tests := []struct {
		name    string
		json    string
		mp      any
		err     error
		zero    bool
		matches []bool // eu, us, none
	}{
		{name: "absent", json: "", zero: true, matches: []bool{true, true, true}},
		{name: "null", json: "null", mp: nil, zero: true, matches: []bool{true, true, true}},
		{name: "empty", json: "{}", mp: map[string]any{}, zero: true, matches: []bool{true, true, true}},
		{name: "one tag", json: `{"region":"eu"}`, mp: map[string]any{"region": "eu"}, matches: []bool{true, false, false}},
		{name: "all tags", json: `{"region":"eu","tier":"gold"}`, mp: map[string]any{"region": "eu", "tier": "gold"},
			matches: []bool{true, false, false}},
		{name: "all tags miss", json: `{"region":"eu","tier":"silver"}`, mp: map[string]any{"region": "eu", "tier": "silver"},
			matches: []bool{false, false, false}},
		{name: "in", json: `{"tag":"region","in":["eu","us"]}`, mp: map[string]any{"tag": "region", "in": []any{"eu", "us"}},
			matches: []bool{true, true, false}},
		{name: "in reversed", json: ` { "in" : [ "us" ] , "tag" : "region" } `, mp: []mpKV{{"in", []any{"us"}}, {"tag", "region"}},
			matches: []bool{false, true, false}},
		{name: "in empty", json: `{"tag":"region","in":[]}`, mp: map[string]any{"tag": "region", "in": []any{}},
			matches: []bool{false, false, false}},
		{name: "escaped", json: `{"regi\u006fn":"\u0065u"}`, matches: []bool{true, false, false}},
		{name: "tag named tag", json: `{"tag":"x"}`, mp: map[string]any{"tag": "x"}, matches: []bool{false, false, false}},
		{name: "number value", json: `{"region":1}`, mp: map[string]any{"region": 1}, err: errFilter},
		{name: "in without tag", json: `{"in":["eu"]}`, mp: map[string]any{"in": []any{"eu"}}, err: errFilter},
		{name: "in extra key", json: `{"tag":"r","in":["eu"],"x":"y"}`, mp: map[string]any{"tag": "r", "in": []any{"eu"}, "x": "y"}, err: errFilter},
		{name: "in numbers", json: `{"tag":"r","in":[1]}`, mp: map[string]any{"tag": "r", "in": []any{1}}, err: errFilter},
		{name: "list not under in", json: `{"region":["eu"]}`, mp: map[string]any{"region": []any{"eu"}}, err: errFilter},
		{name: "array", json: `["eu"]`, mp: []any{"eu"}, err: errFilter},
		{name: "string", json: `"eu"`, mp: "eu", err: errFilter},
		{name: "malformed", json: `{"region":"eu"`, err: errFilter},
		{name: "trailing", json: `{"region":"eu"} x`, err: errFilter},
		{name: "too many tags", json: `{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1","j":"1","k":"1","l":"1","m":"1","n":"1","o":"1","p":"1","q":"1"}`,
			err: errFilterTooBig},
		{name: "too many values", json: `{"tag":"r","in":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 65), ",") + `]}`, err: errFilterTooBig},
	}
	for _, tt := range tests {
		encodings := []struct {
			c   Codec
			raw []byte
		}{{c: CodecJSON, raw: []byte(tt.json)}}
		if tt.mp != nil || tt.name == "null" {
			encodings = append(encodings, struct {
				c   Codec
				raw []byte
			}{c: CodecMsgpack, raw: mpTestEncode(tt.mp)})
		}
		for _, enc := range encodings {
			f, err := ParseFilter(enc.raw, enc.c)
			if err != tt.err {
				t.Errorf("%s/%v: err = %v, want %v", tt.name, enc.c, err, tt.err)
				continue
			}
			if err != nil {
				continue
			}
			if f.IsZero() != tt.zero {
				t.Errorf("%s/%v: IsZero = %v", tt.name, enc.c, f.IsZero())
			}
			got := []bool{f.Match(eu), f.Match(us), f.Match(none)}
			if !reflect.DeepEqual(got, tt.matches) {
				t.Errorf("%s/%v: matches %v, want %v", tt.name, enc.c, got, tt.matches)
			}
		}
	}
}

func BenchmarkFilterMatch(b *testing.B) {
	f, err := ParseFilter([]byte(`{"tag":"region","in":["eu","us","ap"]}`), CodecJSON)
	if err != nil {
		b.Fatal(err)
	}
	tags := map[string]string{"region": "ap", "tier": "gold"}
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(tags) {
			b.Fatal("no match")
		}
	}
}
