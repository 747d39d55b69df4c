package router

import "strings"

// This file holds the naming rules of PROTOCOL.md section 5, the glob patterns
// used by the rooms/pub/sub_channels token claims, and conditional-routing
// filters (section 3, `filter` on publish). All of it is pure functions and
// immutable values, safe to share between goroutines.

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

// ValidPattern reports whether s is a legal permission pattern: 1 to 128
// bytes of name characters and '*', with no empty dot-separated part (such
// a pattern could only match names that ValidName refuses).
func ValidPattern(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	prev := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (!nameChar[c] && c != '*') || (c == '.' && prev == '.') {
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
	var elemBuf [MaxNameLen + 1]int16
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
	var rowBuf [2][MaxNameLen + 2]bool
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

// Filter limits, so that one publish cannot make every receiver do unbounded
// work: a filter is evaluated once per receiver.
const (
	MaxFilterTags   = 16
	MaxFilterValues = 64
)

var (
	errFilter       = badRequest("filter must be an object of tag to string, or {\"tag\":NAME,\"in\":[values]}")
	errFilterTooBig = badRequest("filter has too many tags or values")
)

// Filter is a parsed publish `filter` (PROTOCOL.md section 3), matched
// against a receiver's `tags` claim. The zero Filter matches everyone.
//
// Two shapes: `{"tagA":"x","tagB":"y"}` (every listed tag must have that
// value) and `{"tag":"region","in":["eu","us"]}` (the tag's value must be in
// the list). An object is the second shape exactly when it has an "in" key
// whose value is an array; then it must have a string "tag" and no other keys.
// An empty object matches everyone. A receiver lacking a tag never matches a
// condition on it.
type Filter struct {
	keys   []string // all-of: keys[i] must equal vals[i]
	vals   []string
	inTag  string
	in     []string
	inForm bool
}

// IsZero reports whether f places no condition.
func (f Filter) IsZero() bool { return !f.inForm && len(f.keys) == 0 }

// Match reports whether a receiver with these tags passes f.
func (f Filter) Match(tags map[string]string) bool {
	if f.inForm {
		v, ok := tags[f.inTag]
		if !ok {
			return false
		}
		for _, w := range f.in {
			if v == w {
				return true
			}
		}
		return false
	}
	for i, k := range f.keys {
		if v, ok := tags[k]; !ok || v != f.vals[i] {
			return false
		}
	}
	return true
}

// ParseFilter parses a raw filter value (Envelope.Filter, or a backplane
// payload's filter) in codec c. Empty raw, JSON null and msgpack nil give the
// zero Filter. Failures are bad_request *ProtocolErrors. It allocates the
// strings it keeps; it runs once per publish, not per receiver.
func ParseFilter(raw []byte, c Codec) (Filter, error) {
	if len(raw) == 0 {
		return Filter{}, nil
	}
	var items []filterItem
	var err error
	if c == CodecMsgpack {
		items, err = msgpackFilterItems(raw)
	} else {
		items, err = jsonFilterItems(raw)
	}
	if err != nil || items == nil {
		return Filter{}, err
	}
	var f Filter
	for _, it := range items {
		if it.isList {
			f.inForm = true
		}
	}
	if f.inForm {
		if len(items) != 2 {
			return Filter{}, errFilter
		}
		for _, it := range items {
			switch {
			case it.key == "in" && it.isList:
				f.in = it.list
			case it.key == "tag" && !it.isList:
				f.inTag = it.val
			default:
				return Filter{}, errFilter
			}
		}
		return f, nil
	}
	for _, it := range items {
		f.keys = append(f.keys, it.key)
		f.vals = append(f.vals, it.val)
	}
	return f, nil
}

type filterItem struct {
	key    string
	val    string
	list   []string
	isList bool
}

// jsonFilterItems reads a JSON object of string or array-of-string values.
// It returns nil items and no error for null, and a non-nil empty slice for {}.
func jsonFilterItems(p []byte) ([]filterItem, error) {
	var e Envelope // scratch for unescaping
	i := skipWS(p, 0)
	if i < len(p) && p[i] == 'n' {
		end, err := skipJSONLiteral(p, i, "null")
		if err != nil || skipWS(p, end) != len(p) {
			return nil, errFilter
		}
		return nil, nil
	}
	if i >= len(p) || p[i] != '{' {
		return nil, errFilter
	}
	items := []filterItem{}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		i++
	} else {
		for {
			if i >= len(p) || p[i] != '"' {
				return nil, errFilter
			}
			k, next, err := e.jsonString(p, i)
			if err != nil {
				return nil, errFilter
			}
			it := filterItem{key: string(k)}
			i = skipWS(p, next)
			if i >= len(p) || p[i] != ':' {
				return nil, errFilter
			}
			i = skipWS(p, i+1)
			switch {
			case i < len(p) && p[i] == '"':
				v, next, err := e.jsonString(p, i)
				if err != nil {
					return nil, errFilter
				}
				it.val, i = string(v), next
			case i < len(p) && p[i] == '[':
				it.isList, it.list = true, []string{}
				i = skipWS(p, i+1)
				if i < len(p) && p[i] == ']' {
					i++
					break
				}
				for {
					if i >= len(p) || p[i] != '"' {
						return nil, errFilter
					}
					v, next, err := e.jsonString(p, i)
					if err != nil {
						return nil, errFilter
					}
					if len(it.list) == MaxFilterValues {
						return nil, errFilterTooBig
					}
					it.list = append(it.list, string(v))
					i = skipWS(p, next)
					if i < len(p) && p[i] == ',' {
						i = skipWS(p, i+1)
						continue
					}
					if i >= len(p) || p[i] != ']' {
						return nil, errFilter
					}
					i++
					break
				}
			default:
				return nil, errFilter
			}
			if len(items) == MaxFilterTags {
				return nil, errFilterTooBig
			}
			items = append(items, it)
			i = skipWS(p, i)
			if i < len(p) && p[i] == ',' {
				i = skipWS(p, i+1)
				continue
			}
			if i >= len(p) || p[i] != '}' {
				return nil, errFilter
			}
			i++
			break
		}
	}
	if skipWS(p, i) != len(p) {
		return nil, errFilter
	}
	return items, nil
}

// msgpackFilterItems is jsonFilterItems for a MessagePack map.
func msgpackFilterItems(p []byte) ([]filterItem, error) {
	h, err := mpHead(p, 0)
	if err != nil {
		return nil, errFilter
	}
	if h.kind == mpNil {
		if len(p) != 1 {
			return nil, errFilter
		}
		return nil, nil
	}
	if h.kind != mpMap {
		return nil, errFilter
	}
	if h.n > MaxFilterTags {
		return nil, errFilterTooBig
	}
	items := make([]filterItem, 0, h.n)
	i := h.size
	str := func() (string, bool) {
		s, next, err := mpStrOrNil(p, i, errFilter)
		if err != nil || s == nil {
			return "", false
		}
		i = next
		return string(s), true
	}
	for k := 0; k < h.n; k++ {
		key, ok := str()
		if !ok {
			return nil, errFilter
		}
		it := filterItem{key: key}
		vh, err := mpHead(p, i)
		if err != nil {
			return nil, errFilter
		}
		switch vh.kind {
		case mpStr:
			it.val, _ = str()
		case mpArray:
			if vh.n > MaxFilterValues {
				return nil, errFilterTooBig
			}
			i += vh.size
			it.isList, it.list = true, make([]string, 0, vh.n)
			for range vh.n {
				v, ok := str()
				if !ok {
					return nil, errFilter
				}
				it.list = append(it.list, v)
			}
		default:
			return nil, errFilter
		}
		items = append(items, it)
	}
	if i != len(p) {
		return nil, errFilter
	}
	return items, nil
}
