package wire

// This file exports the JSON scanning and writing primitives of json.go for
// the backplane's own hand-written codec (router/natsbp), which speaks JSON
// between instances and services without encoding/json. They are the same
// functions the client codec uses, with the same rules: strict RFC 8259,
// nesting at most 256 deep, numbers that fit a float64.

// SkipJSONSpace returns the index of the first byte at or after i that is
// not JSON whitespace.
func SkipJSONSpace(p []byte, i int) int { return skipWS(p, i) }

// SkipJSONValue validates the one JSON value starting at p[i] (no leading
// whitespace) and returns the index after it. The value may nest 256 deep,
// and its numbers must fit a float64 (see skipJSONNumber).
func SkipJSONValue(p []byte, i int) (int, error) { return skipJSONValue(p, i, 0) }

// ScanJSONString validates the JSON string starting at the quote p[i] and
// returns the index after its closing quote and whether it contains
// escapes. It does not check UTF-8.
func ScanJSONString(p []byte, i int) (end int, escaped bool, err error) { return scanJSONString(p, i) }

// AppendJSONString appends s as a JSON string (see appendJSONString: invalid
// UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped, '<', '>' and '&'
// are not).
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

// AppendUnescapedJSON appends the contents of a string already validated by
// ScanJSONString (without its quotes), escapes resolved; a lone or
// mismatched UTF-16 surrogate becomes U+FFFD, as encoding/json does. Bytes
// that are not escapes are copied as they are, invalid UTF-8 included.
func AppendUnescapedJSON(dst, s []byte) []byte { return appendUnescapedJSON(dst, s) }
