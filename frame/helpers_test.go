package frame

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// clientFrame builds a masked client frame. b0 is FIN/RSV/opcode as sent.
func clientFrame(b0 byte, key [4]byte, payload []byte) []byte {
	return clientFrameLen(b0, key, payload, 0)
}

// clientFrameLen is clientFrame with a forced length encoding: 0 minimal,
// 2 16-bit, 8 64-bit (non-minimal encodings are legal).
func clientFrameLen(b0 byte, key [4]byte, payload []byte, lenBytes int) []byte {
	n := len(payload)
	b := []byte{b0}
	switch {
	case lenBytes == 8 || (lenBytes == 0 && n > 0xffff):
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	case lenBytes == 2 || (lenBytes == 0 && n >= 126):
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|byte(n))
	}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], key, 0)
	return b
}

// maskFrames turns unmasked (server) frames into the client frames a peer
// would send, so encode and decode tests share one set of vectors.
func maskFrames(t testing.TB, server []byte, key [4]byte) []byte {
	t.Helper()
	var out []byte
	for len(server) > 0 {
		if len(server) < 2 || server[1]&0x80 != 0 {
			t.Fatalf("maskFrames: bad server frame % x", server)
		}
		hs, n := 2, int(server[1]&0x7f)
		switch n {
		case 126:
			hs, n = 4, int(binary.BigEndian.Uint16(server[2:]))
		case 127:
			hs, n = 10, int(binary.BigEndian.Uint64(server[2:]))
		}
		out = append(out, server[0], server[1]|0x80)
		out = append(out, server[2:hs]...)
		out = append(out, key[:]...)
		start := len(out)
		out = append(out, server[hs:hs+n]...)
		ws.Cipher(out[start:], key, 0)
		server = server[hs+n:]
	}
	return out
}

// event is a copied Message, comparable across feeding strategies.
type event struct {
	Op     ws.OpCode
	Data   string
	Code   ws.StatusCode
	Reason string
}

func (e event) String() string {
	if len(e.Data) > 40 {
		return fmt.Sprintf("{%v %d bytes %q... %d}", e.Op, len(e.Data), e.Data[:40], e.Code)
	}
	return fmt.Sprintf("{%v %q %d %q}", e.Op, e.Data, e.Code, e.Reason)
}

// result of feeding a whole input.
type result struct {
	Events []event
	Code   ws.StatusCode // close code of the error, 0 if none
	Err    error         // the sentinel
}

// feed runs input through a fresh decoder, cut into chunks by split (nil:
// one chunk). input is copied first because Next unmasks in place.
func feed(t testing.TB, l *Limits, deflate *deflateOpt, input []byte, split func(n int) int) result {
	t.Helper()
	var d Decoder
	d.Init(l)
	defer d.Release()
	if deflate != nil {
		d.EnableDeflate(deflate.params())
	}
	in := bytes.Clone(input)
	var res result
	for len(in) > 0 {
		c := len(in)
		if split != nil {
			c = max(1, min(split(len(in)), len(in)))
		}
		p := in[:c]
		in = in[c:]
		for len(p) > 0 {
			n, m, err := d.Next(p)
			if n < 0 || n > len(p) {
				t.Fatalf("Next consumed %d of %d", n, len(p))
			}
			p = p[n:]
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v is not a *CloseError", err)
				}
				res.Code, res.Err = ce.Code, ce.Err
				return res
			}
			if m.Op == 0 {
				if len(p) != 0 {
					t.Fatalf("no event but %d bytes left unconsumed", len(p))
				}
				break
			}
			res.Events = append(res.Events, event{Op: m.Op, Data: string(m.Payload), Code: m.CloseCode, Reason: string(m.CloseReason)})
		}
	}
	return res
}

type deflateOpt struct{ noContext bool }

func (o *deflateOpt) params() (p wsflate.Parameters) {
	p.ServerNoContextTakeover = true
	p.ClientNoContextTakeover = o.noContext
	return p
}

func oneByte(int) int { return 1 }

func randomSplit(r *rand.Rand) func(int) int {
	return func(n int) int { return 1 + r.IntN(min(n, 64)) }
}

// splits are the feeding strategies every vector goes through.
func splits(seed uint64) map[string]func(int) int {
	r := rand.New(rand.NewPCG(seed, 7))
	return map[string]func(int) int{
		"whole":  nil,
		"1byte":  oneByte,
		"random": randomSplit(r),
		"small":  func(n int) int { return 1 + r.IntN(min(n, 5)) },
	}
}

func sameResult(a, b result) bool {
	if a.Code != b.Code || a.Err != b.Err || len(a.Events) != len(b.Events) {
		return false
	}
	for i := range a.Events {
		if a.Events[i] != b.Events[i] {
			return false
		}
	}
	return true
}

// clientDeflater compresses messages like a client would: sync flush, tail
// stripped; with takeover the window carries across messages.
type clientDeflater struct {
	buf      bytes.Buffer
	fw       *flate.Writer
	takeover bool
}

// clientDeflaters are pooled: a flate.Writer is ~1 MB of state, which
// would dominate the fuzzer's time.
var clientDeflaters sync.Pool

func newClientDeflater(takeover bool) *clientDeflater {
	c, _ := clientDeflaters.Get().(*clientDeflater)
	if c == nil {
		c = new(clientDeflater)
		c.fw, _ = flate.NewWriter(&c.buf, flate.BestCompression)
	}
	c.takeover = takeover
	c.buf.Reset()
	c.fw.Reset(&c.buf)
	return c
}

func (c *clientDeflater) release() { clientDeflaters.Put(c) }

func (c *clientDeflater) compress(p []byte) []byte {
	c.buf.Reset()
	if !c.takeover {
		c.fw.Reset(&c.buf)
	}
	c.fw.Write(p)
	c.fw.Flush()
	b := bytes.Clone(c.buf.Bytes())
	return bytes.TrimSuffix(b, []byte{0, 0, 0xff, 0xff})
}

var key1 = [4]byte{0x37, 0xfa, 0x21, 0x3d}
