package wire

// This file holds the naming rules of PROTOCOL.md section 5: which bytes a
// room, user or channel name may hold. They are part of the wire contract
// (Validate refuses a bad name before any routing happens) and keep every
// name one valid run of NATS subject tokens. Pure functions, immutable
// tables, safe from any goroutine.

// MaxNameLen is the longest room, user or channel name.
const MaxNameLen = 128

// nameChar marks [A-Za-z0-9_.:-].
var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_.:-" {
		t[c] = true
	}
	return t
}()

// ValidName reports whether b is a legal room, user or channel name: 1 to 128
// bytes of [A-Za-z0-9_.:-] with no empty dot-separated part (no leading or
// trailing '.', no ".."). The rules keep a name one valid run of NATS subject
// tokens after "<prefix>.room." and friends: a '.' separates tokens, and NATS
// refuses a subject with an empty token, so a name like "a..b" would work
// on one instance and silently never reach another.
func ValidName(b []byte) bool {
	if len(b) == 0 || len(b) > MaxNameLen || b[0] == '.' || b[len(b)-1] == '.' {
		return false
	}
	prev := byte(0)
	for _, c := range b {
		if !nameChar[c] || (c == '.' && prev == '.') {
			return false
		}
		prev = c
	}
	return true
}

// IsNameByte reports whether c may appear in a name ([A-Za-z0-9_.:-]); the
// permission patterns of package auth are built from the same bytes plus '*'.
func IsNameByte(c byte) bool { return nameChar[c] }
