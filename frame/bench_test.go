package frame

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

var wsflateNoContext = wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}

func BenchmarkDecode(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{name: "64B", n: 64}, {name: "1KiB", n: 1 << 10}, {name: "16KiB", n: 16 << 10}} {
		frame := clientFrame(0x81, key1, bytes.Repeat([]byte("a"), size.n))
		buf := make([]byte, len(frame))
		b.Run(size.name, func(b *testing.B) {
			var d Decoder
			d.Init(testLimits)
			defer d.Release()
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				copy(buf, frame)
				if _, m, err := d.Next(buf); err != nil || m.Op != ws.OpText {
					b.Fatal(err)
				}
			}
		})
		// The same frame arriving in 1400-byte reads (buffered path).
		b.Run(size.name+"/split1400", func(b *testing.B) {
			var d Decoder
			d.Init(testLimits)
			defer d.Release()
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				copy(buf, frame)
				got := false
				for p := buf; len(p) > 0; {
					n, m, err := d.Next(p[:min(len(p), 1400)])
					if err != nil {
						b.Fatal(err)
					}
					p = p[n:]
					got = got || m.Op != 0
				}
				if !got {
					b.Fatal("no message")
				}
			}
		})
	}
}

func BenchmarkDecodeDeflated(b *testing.B) {
	payload := []byte(wordSoup(4 << 10))
	c := newClientDeflater(false).compress(payload)
	frame := clientFrame(0xc1, key1, c)
	buf := make([]byte, len(frame))
	var d Decoder
	d.Init(testLimits)
	d.EnableDeflate(wsflateNoContext)
	defer d.Release()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		copy(buf, frame)
		if _, m, err := d.Next(buf); err != nil || len(m.Payload) != len(payload) {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		payload := bytes.Repeat([]byte("a"), n)
		dst := make([]byte, 0, n+16)
		b.Run(byteSize(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				dst = AppendFrame(dst[:0], ws.OpText, payload)
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func maskLoop(p []byte, key [4]byte, off int) {
	for i := range p {
		p[i] ^= key[(off+i)&3]
	}
}

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{64, 1 << 10, 16 << 10} {
		p := make([]byte, n)
		b.Run("ws.Cipher/"+byteSize(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				ws.Cipher(p, key1, 1)
			}
		})
		b.Run("loop/"+byteSize(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				maskLoop(p, key1, 1)
			}
		})
	}
}

func BenchmarkUTF8(b *testing.B) {
	inputs := []struct {
		name string
		s    []byte
	}{
		{name: "ascii", s: bytes.Repeat([]byte("hello world, "), 1000)},
		{name: "multibyte", s: bytes.Repeat([]byte("κόσμε 日本語 "), 500)},
	}
	for _, in := range inputs {
		b.Run("UTF8.Write/"+in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.s)))
			b.ReportAllocs()
			for b.Loop() {
				var u UTF8
				if !u.Write(in.s) || !u.Complete() {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("ValidUTF8/"+in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.s)))
			for b.Loop() {
				if !ValidUTF8(in.s) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("utf8.Valid/"+in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.s)))
			for b.Loop() {
				if !utf8.Valid(in.s) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func BenchmarkSharedDeflated(b *testing.B) {
	payload := []byte(wordSoup(1 << 10))
	b.Run("Deflated", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			s := NewShared(ws.OpText, payload)
			if _, err := s.Deflated(); err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
	})
	b.Run("cached", func(b *testing.B) {
		s := NewShared(ws.OpText, payload)
		defer s.Release()
		s.Deflated()
		b.ReportAllocs()
		for b.Loop() {
			s.Retain()
			if _, err := s.Deflated(); err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
	})
	b.Run("AppendDeflated", func(b *testing.B) {
		dst := make([]byte, 0, 2048)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			dst, _ = AppendDeflated(dst[:0], ws.OpText, payload)
		}
	})
}
