package wire

import (
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
	}
}
