package frame

import "unicode/utf8"

// Incremental UTF-8 validation uses a byte-class DFA in the style of Bjoern Hoehrmann's
// decoder: one table lookup for the class of a byte and one for the
// transition. The state after a Write says exactly how much of the current
// code point is still missing, which is what lets text be validated as it
// trickles in (fail fast on the first impossible byte, even mid-fragment)
// without buffering anything.
//
// States (multiplied by numClasses so the transition index is one add):
//
//	sAccept  between code points
//	sReject  sticky failure
//	sCont1   one continuation byte 80-BF missing
//	sCont2   two continuation bytes missing
//	sE0      after E0: A0-BF then sCont1 (rejects overlongs)
//	sED      after ED: 80-9F then sCont1 (rejects surrogates)
//	sF0      after F0: 90-BF then sCont2 (rejects overlongs)
//	sF1      after F1-F3: 80-BF then sCont2
//	sF4      after F4: 80-8F then sCont2 (rejects > U+10FFFF)
const (
	numClasses = 12

	sAccept = 0 * numClasses
	sReject = 1 * numClasses
	sCont1  = 2 * numClasses
	sCont2  = 3 * numClasses
	sE0     = 4 * numClasses
	sED     = 5 * numClasses
	sF0     = 6 * numClasses
	sF1     = 7 * numClasses
	sF4     = 8 * numClasses

	numStates = 9
)

// Byte classes.
const (
	cASCII = iota // 00-7F
	c80           // 80-8F
	c90           // 90-9F
	cA0           // A0-BF
	cBad          // C0-C1, F5-FF
	cC2           // C2-DF
	cE0           // E0
	cE1           // E1-EC, EE-EF
	cED           // ED
	cF0           // F0
	cF1           // F1-F3
	cF4           // F4
)

var (
	utf8Class [256]uint8
	utf8Trans [numStates * numClasses]uint8
)

func init() {
	for b := 0; b < 256; b++ {
		var c uint8
		switch {
		case b < 0x80:
			c = cASCII
		case b < 0x90:
			c = c80
		case b < 0xA0:
			c = c90
		case b < 0xC0:
			c = cA0
		case b < 0xC2:
			c = cBad
		case b < 0xE0:
			c = cC2
		case b == 0xE0:
			c = cE0
		case b == 0xED:
			c = cED
		case b < 0xF0:
			c = cE1
		case b == 0xF0:
			c = cF0
		case b < 0xF4:
			c = cF1
		case b == 0xF4:
			c = cF4
		default:
			c = cBad
		}
		utf8Class[b] = c
	}
	for i := range utf8Trans {
		utf8Trans[i] = sReject
	}
	set := func(s uint8, next uint8, classes ...int) {
		for _, c := range classes {
			utf8Trans[int(s)+c] = next
		}
	}
	set(sAccept, sAccept, cASCII)
	set(sAccept, sCont1, cC2)
	set(sAccept, sE0, cE0)
	set(sAccept, sCont2, cE1)
	set(sAccept, sED, cED)
	set(sAccept, sF0, cF0)
	set(sAccept, sF1, cF1)
	set(sAccept, sF4, cF4)
	set(sCont1, sAccept, c80, c90, cA0)
	set(sCont2, sCont1, c80, c90, cA0)
	set(sE0, sCont1, cA0)
	set(sED, sCont1, c80, c90)
	set(sF0, sCont2, c90, cA0)
	set(sF1, sCont2, c80, c90, cA0)
	set(sF4, sCont2, c80)
}

// UTF8 is an incremental UTF-8 validator. The zero value is ready and
// represents "between code points". It is one byte so it can live inside
// the Decoder of every connection.
type UTF8 struct {
	state uint8
}

// Write feeds p. It reports false as soon as p (together with what was
// written before) cannot be a prefix of valid UTF-8; once false, it stays
// false until Reset.
//
// The DFA only runs on the at most 3 bytes that finish a code point left
// open by the previous Write and on the at most 3 bytes of a code point
// left open at the end of p. The complete code points in between go to
// unicode/utf8.Valid, which is exactly as strict and much faster (ASCII
// 8 bytes at a time, multibyte without per-byte table walks).
func (u *UTF8) Write(p []byte) bool {
	s := u.state
	i := 0
	for ; s != sAccept && i < len(p); i++ {
		if s == sReject {
			return false
		}
		s = utf8Trans[int(s)+int(utf8Class[p[i]])]
	}
	if s == sReject {
		u.state = sReject
		return false
	}
	if i == len(p) {
		u.state = s
		return true
	}
	cut := i + completePrefix(p[i:])
	if !utf8.Valid(p[i:cut]) {
		u.state = sReject
		return false
	}
	for _, c := range p[cut:] {
		s = utf8Trans[int(s)+int(utf8Class[c])]
	}
	u.state = s
	return s != sReject
}

// completePrefix returns the length of p without a trailing incomplete
// multibyte sequence (found by looking back for its lead byte). Whatever
// it cuts, the DFA checks; whatever it keeps, utf8.Valid checks.
func completePrefix(p []byte) int {
	for j := len(p) - 1; j >= 0 && j >= len(p)-4; j-- {
		c := p[j]
		if c&0xc0 == 0x80 {
			continue // continuation byte
		}
		need := 1
		switch {
		case c >= 0xf0:
			need = 4
		case c >= 0xe0:
			need = 3
		case c >= 0xc0:
			need = 2
		}
		if len(p)-j < need {
			return j
		}
		return len(p)
	}
	return len(p)
}

// Complete reports whether everything written so far is valid UTF-8 that
// does not end in the middle of a code point.
func (u *UTF8) Complete() bool { return u.state == sAccept }

// Reset makes u ready for a new text.
func (u *UTF8) Reset() { u.state = sAccept }

// ValidUTF8 reports whether p is entirely valid UTF-8. For a whole buffer the
// standard library's validator is as strict as the DFA (it also rejects
// surrogates, overlongs and values above U+10FFFF) and faster on multibyte
// text, so it is used directly.
func ValidUTF8(p []byte) bool { return utf8.Valid(p) }
