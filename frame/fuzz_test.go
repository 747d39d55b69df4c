package frame

import (
	"bytes"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func fuzzSeed(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	return h.Sum64()
}

// FuzzDecoder checks two properties:
//   - arbitrary bytes never panic and decode to the same events and error
//     however they are split into reads;
//   - real frames built from the input (fragmented, compressed, with
//     interleaved pings, random masks) decode to exactly the messages they
//     were built from, whole and split.
func FuzzDecoder(f *testing.F) {
	for _, v := range vectors {
		f.Add(maskFrames(f, v.server, key1))
	}
	f.Add([]byte("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"))
	f.Add([]byte{0x01, 0x83, 1, 2, 3, 4, 'a', 'b', 'c', 0x89, 0x80, 0, 0, 0, 0, 0x80, 0x81, 9, 9, 9, 9, 'd'})
	f.Add([]byte("\x0f\x05hello\x1b\x03abc\x42\x00"))
	lim := &Limits{MaxMessageSize: 4096}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := rand.New(rand.NewPCG(fuzzSeed(data), 1))
		for _, df := range []*deflateOpt{nil, {}, {noContext: true}} {
			whole := feed(t, lim, df, data, nil)
			if got := feed(t, lim, df, data, oneByte); !sameResult(got, whole) {
				t.Fatalf("1-byte split: %v %v, whole: %v %v", got.Events, got.Err, whole.Events, whole.Err)
			}
			if got := feed(t, lim, df, data, randomSplit(r)); !sameResult(got, whole) {
				t.Fatalf("random split: %v %v, whole: %v %v", got.Events, got.Err, whole.Events, whole.Err)
			}
		}

		in, want, df := buildFrames(data, r)
		exp := result{Events: want}
		if got := feed(t, testLimits, df, in, nil); !sameResult(got, exp) {
			t.Fatalf("built frames: got %v %v, want %v", got.Events, got.Err, want)
		}
		if got := feed(t, testLimits, df, in, randomSplit(r)); !sameResult(got, exp) {
			t.Fatalf("built frames split: got %v %v, want %v", got.Events, got.Err, want)
		}
	})
}

// buildFrames turns fuzz input into valid client traffic and the events it
// must decode to. Each message takes a control byte and a length byte:
// bit 0 text/binary, bits 1-2 fragments-1, bit 3 compressed, bit 4 ping
// between fragments, bit 5 force 16-bit lengths.
func buildFrames(data []byte, r *rand.Rand) ([]byte, []event, *deflateOpt) {
	takeover := len(data) > 0 && data[0]&0x80 != 0
	cd := newClientDeflater(takeover)
	defer cd.release()
	df := &deflateOpt{noContext: !takeover}
	var out []byte
	var want []event
	key := func() [4]byte {
		var k [4]byte
		for i := range k {
			k[i] = byte(r.Uint32())
		}
		return k
	}
	for len(data) >= 2 {
		c, n := data[0], int(data[1])
		data = data[2:]
		n = min(n, len(data))
		payload := data[:n]
		data = data[n:]
		op := ws.OpBinary
		if c&1 != 0 {
			op = ws.OpText
			payload = []byte(strings.ToValidUTF8(string(payload), "\uFFFD"))
		}
		want = append(want, event{Op: op, Data: string(payload)})
		wire := payload
		rsv := byte(0)
		if c&8 != 0 {
			wire = cd.compress(payload)
			rsv = 0x40
		}
		frags := int(c>>1&3) + 1
		lenBytes := 0
		if c&0x20 != 0 {
			lenBytes = 2
		}
		for i := range frags {
			lo, hi := len(wire)*i/frags, len(wire)*(i+1)/frags
			b0 := byte(ws.OpContinuation)
			if i == 0 {
				b0 = byte(op) | rsv
			}
			if i == frags-1 {
				b0 |= 0x80
			}
			out = append(out, clientFrameLen(b0, key(), wire[lo:hi], lenBytes)...)
			if c&0x10 != 0 && i < frags-1 {
				out = append(out, clientFrame(0x89, key(), []byte{c})...)
				want = append(want[:len(want)-1], event{Op: ws.OpPing, Data: string([]byte{c})}, want[len(want)-1])
			}
		}
	}
	return out, want, df
}

// FuzzUTF8 compares the incremental validator, fed in pieces, with
// unicode/utf8.Valid.
func FuzzUTF8(f *testing.F) {
	for _, s := range []string{"", "hello", "κόσμε", "\xed\xa0\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xf4\x90\x80\x80", "\xf4\x8f\xbf\xbf", "abcdefghijklmnopq\xce", strings.Repeat("€", 10)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := utf8.Valid(data)
		if ValidUTF8(data) != want {
			t.Fatalf("ValidUTF8 != utf8.Valid")
		}
		var u UTF8
		if got := u.Write(data) && u.Complete(); got != want {
			t.Fatalf("UTF8 whole = %v, want %v", got, want)
		}
		r := rand.New(rand.NewPCG(fuzzSeed(data), 2))
		u.Reset()
		ok := true
		for p := data; len(p) > 0 && ok; {
			c := 1 + r.IntN(min(len(p), 20))
			ok = u.Write(p[:c])
			// A rejected prefix must really be invalid: no continuation can
			// make it valid.
			if !ok && utf8.Valid(bytes.Clone(data[:len(data)-len(p)+c])) {
				t.Fatalf("rejected a valid prefix")
			}
			p = p[c:]
		}
		if got := ok && u.Complete(); got != want {
			t.Fatalf("UTF8 chunked = %v, want %v", got, want)
		}
	})
}
