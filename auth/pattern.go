package auth

import (
	"strings"
	"unsafe"

	"github.com/wsgate/wsgate/wire"
)

// This file holds the glob patterns of the rooms, pub and sub_channels token
// claims: which patterns are legal and whether a name matches one. Pure
// functions, safe from any goroutine.

// ValidPattern reports whether s is a legal permission pattern: 1 to 128
// bytes of name characters and '*', with no empty dot-separated part (such
// a pattern could only match names that ValidName refuses).
func ValidPattern(s string) bool {
	if len(s) == 0 || len(s) > wire.MaxNameLen || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	prev := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (!wire.IsNameByte(c) && c != '*') || (c == '.' && prev == '.') {
			return false
		}
		prev = c
	}
	return true
}

// Pattern elements; literal bytes are stored as themselves (>= 0).
const (
	elemStar  = -1 // '*': any run of non-dot bytes
	elemStars = -2 // '**' (or longer runs): any run of bytes
)

// MatchPattern reports whether name matches the glob pattern. `*` matches
// any sequence (also empty) inside one dot-separated token, `**` matches any
// sequence including dots; every other byte matches itself. So `chat.*`
// matches `chat.general` but not `chat.a.b` or `chatx`, `chat.**` matches both
// `chat.a` and `chat.a.b`, and `**` matches everything. It runs in
// O(len(pattern) x len(name)) without backtracking blow-ups and without
// allocating for patterns up to 128 bytes.
func MatchPattern(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	switch {
	case star < 0:
		return pattern == name
	case star == len(pattern)-1: // "prefix*", the common case
		return strings.HasPrefix(name, pattern[:star]) && strings.IndexByte(name[star:], '.') < 0
	case star == len(pattern)-2 && pattern[star+1] == '*': // "prefix**"
		return strings.HasPrefix(name, pattern[:star])
	}
	var elemBuf [wire.MaxNameLen + 1]int16
	elems := elemBuf[:0]
	if len(pattern) > len(elemBuf) {
		elems = make([]int16, 0, len(pattern))
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '*' {
			elems = append(elems, int16(pattern[i]))
			continue
		}
		j := i
		for j < len(pattern) && pattern[j] == '*' {
			j++
		}
		if j-i >= 2 {
			elems = append(elems, elemStars)
		} else {
			elems = append(elems, elemStar)
		}
		i = j - 1
	}
	// Rolling DP over name bytes: row[j] = elems[:j] matches name[:i].
	var rowBuf [2][wire.MaxNameLen + 2]bool
	prev, cur := rowBuf[0][:], rowBuf[1][:]
	if len(elems)+1 > len(prev) {
		prev, cur = make([]bool, len(elems)+1), make([]bool, len(elems)+1)
	}
	prev[0] = true
	for j, el := range elems {
		prev[j+1] = prev[j] && el < 0
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		cur[0] = false
		alive := false
		for j, el := range elems {
			var m bool
			switch el {
			case elemStar:
				m = cur[j] || (prev[j+1] && c != '.')
			case elemStars:
				m = cur[j] || prev[j+1]
			default:
				m = prev[j] && byte(el) == c
			}
			cur[j+1] = m
			alive = alive || m
		}
		if !alive {
			return false
		}
		prev, cur = cur, prev
	}
	return prev[len(elems)]
}

// matchAny reports whether name matches one of patterns.
func matchAny(patterns []string, name []byte) bool {
	s := bstr(name)
	for _, p := range patterns {
		if MatchPattern(p, s) {
			return true
		}
	}
	return false
}

// bstr views b as a string without copying, for transient reads only (the
// result must not be retained past the call it is passed to).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
