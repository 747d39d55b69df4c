package auth

import (
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wire"
)

// Every valid name is a valid pattern; '*' is the one byte patterns add.
func TestPatternValid(t *testing.T) {
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
		if got := wire.ValidName([]byte(tt.in)); got != tt.want {
			t.Fatalf("table out of date: wire.ValidName(%q) = %v", tt.in, got)
		}
		wantPattern := tt.want || tt.in == "star*"
		if got := ValidPattern(tt.in); got != wantPattern {
			t.Errorf("ValidPattern(%q) = %v", tt.in, got)
		}
	}
}

// Patterns with an empty dot-separated part are refused too: they could
// only ever match names that ValidName refuses.
func TestPatternEmptyTokens(t *testing.T) {
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

func TestPatternMatch(t *testing.T) {
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

func FuzzMatchPattern(f *testing.F) {
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

func BenchmarkMatchPattern(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !MatchPattern("chat.*", "chat.general") {
			b.Fatal("no match")
		}
	}
}
