package frame

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUTF8(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{name: "empty", in: "", valid: true},
		{name: "ascii", in: "Hello, world! 0123456789 abcdefghijklmnop", valid: true},
		{name: "kosme", in: "κόσμε", valid: true},
		{name: "mixed", in: "a ü € 𝄞 日本語 z", valid: true},
		{name: "max code point", in: "\xf4\x8f\xbf\xbf", valid: true},
		{name: "last before surrogates", in: "\xed\x9f\xbf", valid: true},
		{name: "first after surrogates", in: "\xee\x80\x80", valid: true},
		{name: "U+FFFF", in: "\xef\xbf\xbf", valid: true},
		{name: "surrogate high", in: "\xed\xa0\x80", valid: false},
		{name: "surrogate low", in: "\xed\xbf\xbf", valid: false},
		{name: "overlong slash 2", in: "\xc0\xaf", valid: false},
		{name: "overlong slash 3", in: "\xe0\x80\xaf", valid: false},
		{name: "overlong slash 4", in: "\xf0\x80\x80\xaf", valid: false},
		{name: "overlong C1", in: "\xc1\xbf", valid: false},
		{name: "above U+10FFFF", in: "\xf4\x90\x80\x80", valid: false},
		{name: "F5", in: "\xf5\x80\x80\x80", valid: false},
		{name: "FF", in: "\xff", valid: false},
		{name: "lone continuation", in: "a\x80b", valid: false},
		{name: "truncated 2", in: "\xce", valid: false},
		{name: "truncated 3", in: "\xe1\xbd", valid: false},
		{name: "truncated 4", in: "\xf0\x9d\x84", valid: false},
		{name: "missing continuation", in: "\xe1\xbdx", valid: false},
		{name: "invalid after long ascii", in: strings.Repeat("a", 37) + "\xff", valid: false},
		{name: "fail-fast prefix", in: "\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", valid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidUTF8([]byte(tt.in)); got != tt.valid {
				t.Fatalf("ValidUTF8 = %v", got)
			}
			if utf8.ValidString(tt.in) != tt.valid {
				t.Fatalf("table disagrees with unicode/utf8")
			}
			// Every split point, and one byte at a time.
			for cut := 0; cut <= len(tt.in); cut++ {
				var u UTF8
				ok := u.Write([]byte(tt.in[:cut])) && u.Write([]byte(tt.in[cut:])) && u.Complete()
				if ok != tt.valid {
					t.Fatalf("split at %d: %v", cut, ok)
				}
			}
			var u UTF8
			ok := true
			for i := 0; i < len(tt.in) && ok; i++ {
				ok = u.Write([]byte{tt.in[i]})
			}
			if ok && !u.Complete() {
				ok = false
			}
			if ok != tt.valid {
				t.Fatalf("byte at a time: %v", ok)
			}
		})
	}
}

// TestUTF8FailFast: Write must fail at the first impossible byte, before
// the rest of the text arrives.
func TestUTF8FailFast(t *testing.T) {
	tests := []struct {
		name   string
		prefix string // valid so far
		bad    string // the byte(s) that make it invalid
	}{
		{name: "surrogate", prefix: "\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed", bad: "\xa0"},
		{name: "overlong E0", prefix: "ok\xe0", bad: "\x80"},
		{name: "above max", prefix: "\xf4", bad: "\x90"},
		{name: "C0", prefix: "abc", bad: "\xc0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u UTF8
			if !u.Write([]byte(tt.prefix)) {
				t.Fatalf("valid prefix rejected")
			}
			if u.Write([]byte(tt.bad)) {
				t.Fatalf("invalid byte accepted")
			}
			if u.Write([]byte("a")) || u.Complete() {
				t.Fatalf("rejection is not sticky")
			}
			u.Reset()
			if !u.Write([]byte("a")) || !u.Complete() {
				t.Fatalf("Reset did not reset")
			}
		})
	}
}
