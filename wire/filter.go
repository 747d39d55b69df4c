package wire

// This file holds conditional-routing filters (PROTOCOL.md section 3,
// `filter` on publish): the parsed Filter, matched once per receiver against
// its `tags` claim, and ParseFilter, which reads the raw filter value in any
// encoding through that encoding's filter reader (jsonFilterItems in json.go,
// msgpackFilterItems in msgpack.go,
// cborFilterItems in cbor.go). A parsed Filter is immutable, safe to
// share between goroutines.

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
	switch c {
	case CodecMsgpack:
		items, err = msgpackFilterItems(raw)
	case CodecProtobuf:
		items, err = protobufFilterItems(raw)
	case CodecCBOR:
		items, err = cborFilterItems(raw)
	default:
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
