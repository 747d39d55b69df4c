package frame

import (
	"compress/flate"
	"io"
	"sync"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// inflateTail is appended to every compressed message: the 00 00 ff ff
// that RFC 7692 7.2.2 says the sender stripped, then an empty final stored
// block so the flate reader ends with io.EOF instead of io.ErrUnexpectedEOF.
var inflateTail = []byte("\x00\x00\xff\xff\x01\x00\x00\xff\xff")

// inflateState is the per-connection state of client context takeover: the
// last 32 KiB of inflated output, which the client's compressor may refer
// back to in later messages.
type inflateState struct {
	dict []byte
}

const maxWindow = 32 << 10

func (s *inflateState) update(out []byte) {
	if s.dict == nil {
		s.dict = make([]byte, 0, maxWindow)
	}
	if len(out) >= maxWindow {
		s.dict = append(s.dict[:0], out[len(out)-maxWindow:]...)
		return
	}
	if keep := maxWindow - len(out); len(s.dict) > keep {
		copy(s.dict, s.dict[len(s.dict)-keep:])
		s.dict = s.dict[:keep]
	}
	s.dict = append(s.dict, out...)
}

// inflateSrc feeds the payload then the tail to the flate reader. It is an
// io.ByteReader so flate does not wrap it in a bufio.Reader.
type inflateSrc struct{ a, b []byte }

func (s *inflateSrc) Read(p []byte) (int, error) {
	for len(s.a) == 0 {
		if len(s.b) == 0 {
			return 0, io.EOF
		}
		s.a, s.b = s.b, nil
	}
	n := copy(p, s.a)
	s.a = s.a[n:]
	return n, nil
}

func (s *inflateSrc) ReadByte() (byte, error) {
	for len(s.a) == 0 {
		if len(s.b) == 0 {
			return 0, io.EOF
		}
		s.a, s.b = s.b, nil
	}
	c := s.a[0]
	s.a = s.a[1:]
	return c, nil
}

// inflater pairs a flate reader (about 40 KiB of state, hence pooled and
// shared by all connections) with its source.
type inflater struct {
	src inflateSrc
	fr  io.ReadCloser
}

var inflaterPool sync.Pool

func getInflater(src, dict []byte) *inflater {
	f, _ := inflaterPool.Get().(*inflater)
	if f == nil {
		f = new(inflater)
		f.src = inflateSrc{a: src, b: inflateTail}
		f.fr = flate.NewReaderDict(&f.src, dict)
		return f
	}
	f.src = inflateSrc{a: src, b: inflateTail}
	_ = f.fr.(flate.Resetter).Reset(&f.src, dict)
	return f
}

func putInflater(f *inflater) {
	f.src = inflateSrc{}
	inflaterPool.Put(f)
}

// inflateMessage inflates a whole compressed message and makes it the
// retained payload.
func (d *Decoder) inflateMessage(op ws.OpCode, src []byte) (Message, error) {
	out, err := d.inflate(src, op == ws.OpText)
	if err != nil {
		return Message{}, err
	}
	d.msg = out
	d.flags |= flRetainMsg
	return Message{Op: op, Payload: out.B}, nil
}

// inflate decompresses src into a pooled buffer, never producing more than
// MaxMessageSize+1 bytes (so a decompression bomb costs at most the limit),
// validating text as it is produced.
func (d *Decoder) inflate(src []byte, text bool) (*bytebufferpool.ByteBuffer, error) {
	if len(src) == 0 {
		// Not valid deflate data (an empty message compresses to 0x00),
		// but some clients send it; it can only mean "empty".
		out := bytebufferpool.Get()
		out.B = out.B[:0]
		return out, nil
	}
	maxSize := d.limits.MaxMessageSize
	limit := maxSize + 1
	var dict []byte
	if d.infl != nil {
		dict = d.infl.dict
	}
	f := getInflater(src, dict)
	out := bytebufferpool.Get()
	b := out.B[:0]
	var u UTF8
	fail := func(err error) (*bytebufferpool.ByteBuffer, error) {
		putInflater(f)
		out.B = b[:0]
		bytebufferpool.Put(out)
		return nil, err
	}
	for {
		if len(b) == cap(b) {
			c := max(2*cap(b), 4*len(src), 512)
			if c > limit {
				c = limit
			}
			nb := make([]byte, len(b), c)
			copy(nb, b)
			b = nb
		}
		end := min(cap(b), limit)
		k, err := f.fr.Read(b[len(b):end])
		if text && !u.Write(b[len(b):len(b)+k]) {
			return fail(errInvalidUTF8)
		}
		b = b[:len(b)+k]
		if len(b) > maxSize {
			return fail(errTooLarge)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(errInflate)
		}
	}
	putInflater(f)
	if text && !u.Complete() {
		out.B = b[:0]
		bytebufferpool.Put(out)
		return nil, errInvalidUTF8
	}
	if d.infl != nil {
		d.infl.update(b)
	}
	out.B = b
	return out, nil
}
