package router

import (
	"reflect"
	"strings"
	"testing"
)

func TestNameValid(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{in: "lobby", want: true},
		{in: "chat.general", want: true},
		{in: "A-Z_a-z.0:9", want: true},
		{in: strings.Repeat("x", 128), want: true},
		{in: strings.Repeat("x", 129)},
		{in: ""},
		{in: "has space"},
		{in: "star*"},
		{in: "gt>"},
		{in: "slash/"},
		{in: "caf\u00e9"},
		{in: "nul\x00"},
		// Empty NATS tokens (issue 9): work on one instance, never cross.
		{in: "a..b"},
		{in: ".a"},
		{in: "a."},
		{in: "."},
		{in: "a...b"},
		{in: "a.b.c", want: true},
	}
	for _, tt := range tests {
		if got := ValidName([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidName(%q) = %v", tt.in, got)
		}
		wantPattern := tt.want || tt.in == "star*"
		if got := ValidPattern(tt.in); got != wantPattern {
			t.Errorf("ValidPattern(%q) = %v", tt.in, got)
		}
	}
}

// Patterns with an empty dot-separated part are refused too: they could
// only ever match names that ValidName refuses.
func TestNamePatternEmptyTokens(t *testing.T) {
	for _, p := range []string{"a..*", ".*", "*.", "chat.", "**..x", "."} {
		if ValidPattern(p) {
			t.Errorf("ValidPattern(%q) = true", p)
		}
	}
	for _, p := range []string{"chat.*", "*.*", "**", "a.**.b", "*"} {
		if !ValidPattern(p) {
			t.Errorf("ValidPattern(%q) = false", p)
		}
	}
}

func TestNameMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{pattern: "lobby", name: "lobby", want: true},
		{pattern: "lobby", name: "lobby2"},
		{pattern: "chat.*", name: "chat.general", want: true},
		{pattern: "chat.*", name: "chat.", want: true},
		{pattern: "chat.*", name: "chat.a.b"},
		{pattern: "chat.*", name: "chatx"},
		{pattern: "chat.*", name: "chat"},
		{pattern: "chat.**", name: "chat.a.b", want: true},
		{pattern: "chat.**", name: "chat.a", want: true},
		{pattern: "chat.**", name: "chat"},
		{pattern: "**", name: "any.thing.at.all", want: true},
		{pattern: "*", name: "one", want: true},
		{pattern: "*", name: "one.two"},
		{pattern: "*.*", name: "one.two", want: true},
		{pattern: "*.*", name: "one.two.three"},
		{pattern: "room-*-eu", name: "room-42-eu", want: true},
		{pattern: "room-*-eu", name: "room-4.2-eu"},
		{pattern: "a*b*c", name: "aXbYc", want: true},
		{pattern: "a*b*c", name: "abc", want: true},
		{pattern: "a*b*c", name: "acb"},
		{pattern: "**.log", name: "x.y.log", want: true},
		{pattern: "**.log", name: "log"},
		{pattern: "***", name: "a.b", want: true},
		{pattern: "a**b", name: "a.x.b", want: true},
		{pattern: "*.b", name: ".b", want: true},
		{pattern: "", name: "", want: true},
		{pattern: strings.Repeat("*a", 100), name: strings.Repeat("a", 100), want: true},
		{pattern: strings.Repeat("*a", 100) + "b", name: strings.Repeat("a", 128)},
		{pattern: strings.Repeat("x", 200) + "*", name: strings.Repeat("x", 201), want: true},
	}
	for _, tt := range tests {
		if got := MatchPattern(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v", tt.pattern, tt.name, got)
		}
		if len(tt.pattern) < 20 && refMatchPattern(tt.pattern, tt.name) != tt.want { // the reference is exponential
			t.Errorf("reference matcher disagrees on (%q, %q)", tt.pattern, tt.name)
		}
	}
	if a := testing.AllocsPerRun(50, func() { MatchPattern("chat.**.x*", "chat.a.b.xyz") }); a != 0 {
		t.Errorf("MatchPattern allocates %.1f", a)
	}
}

// refMatchPattern is an exponential but obviously correct reference matcher.
func refMatchPattern(p, n string) bool {
	if p == "" {
		return n == ""
	}
	if strings.HasPrefix(p, "**") {
		rest := strings.TrimLeft(p, "*")
		for i := 0; i <= len(n); i++ {
			if refMatchPattern(rest, n[i:]) {
				return true
			}
		}
		return false
	}
	if p[0] == '*' {
		for i := 0; i <= len(n); i++ {
			if refMatchPattern(p[1:], n[i:]) {
				return true
			}
			if i < len(n) && n[i] == '.' {
				break
			}
		}
		return false
	}
	return n != "" && p[0] == n[0] && refMatchPattern(p[1:], n[1:])
}

func FuzzNameMatchPattern(f *testing.F) {
	f.Add("chat.*", "chat.general")
	f.Add("a**b*c", "a.x.bYc")
	f.Fuzz(func(t *testing.T, p, n string) {
		if len(p) > 12 || len(n) > 24 {
			return // keep the reference matcher fast
		}
		if got, want := MatchPattern(p, n), refMatchPattern(p, n); got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, reference %v", p, n, got, want)
		}
	})
}

func TestNameParseFilter(t *testing.T) {
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

func BenchmarkNameFilterMatch(b *testing.B) {
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

func BenchmarkNameMatchPattern(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !MatchPattern("chat.*", "chat.general") {
			b.Fatal("no match")
		}
	}
}
