package frame

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// Shared is a server frame encoded once and written to many connections
// (room broadcast). It is the only type of this package that is safe for
// concurrent use: any goroutine may call any method, as long as every
// Retain is balanced by one Release and no method is called after the last
// Release.
//
// The compressed variants are computed lazily, once, by whichever caller
// asks first; broadcasts to rooms without deflate clients never pay for
// compression.
type Shared struct {
	refs  atomic.Int32
	op    ws.OpCode
	hdr   int // header size inside plain
	plain *bytebufferpool.ByteBuffer

	mu   sync.Mutex // serialises computing defl / huff
	defl atomic.Pointer[bytebufferpool.ByteBuffer]
	huff atomic.Pointer[bytebufferpool.ByteBuffer]
}

var sharedPool = sync.Pool{New: func() any { return new(Shared) }}

// NewShared encodes payload as one FIN frame with opcode op. The result
// holds one reference; payload is copied and may be reused at once.
func NewShared(op ws.OpCode, payload []byte) *Shared {
	s := sharedPool.Get().(*Shared)
	s.op = op
	s.hdr = HeaderSize(len(payload))
	s.plain = bytebufferpool.Get()
	s.plain.B = AppendFrame(s.plain.B[:0], op, payload)
	s.refs.Store(1)
	return s
}

// Retain adds a reference (for example one per connection the frame is
// queued on).
func (s *Shared) Retain() {
	if s.refs.Add(1) <= 1 {
		panic("frame: Retain of a released Shared")
	}
}

// Release drops a reference. The last one returns the bytes to the pool:
// slices from Bytes/Deflated must not be used after the caller's Release.
func (s *Shared) Release() {
	r := s.refs.Add(-1)
	if r > 0 {
		return
	}
	if r < 0 {
		panic("frame: Shared released too many times")
	}
	bytebufferpool.Put(s.plain)
	s.plain = nil
	if b := s.defl.Swap(nil); b != nil {
		bytebufferpool.Put(b)
	}
	if b := s.huff.Swap(nil); b != nil {
		bytebufferpool.Put(b)
	}
	sharedPool.Put(s)
}

// Bytes is the plain encoded frame.
func (s *Shared) Bytes() []byte { return s.plain.B }

// Deflated is the permessage-deflate encoding (RSV1, BestSpeed, no context
// takeover) for connections with a 32 KiB server window.
func (s *Shared) Deflated() ([]byte, error) { return s.deflated(&s.defl, false) }

// DeflatedHuffman is the Huffman-only compressed encoding, for connections
// where HuffmanOnly(params) is true (client asked for server_max_window_bits
// < 15, which Go's flate cannot honour with back-references).
func (s *Shared) DeflatedHuffman() ([]byte, error) { return s.deflated(&s.huff, true) }

func (s *Shared) deflated(slot *atomic.Pointer[bytebufferpool.ByteBuffer], huffman bool) ([]byte, error) {
	if b := slot.Load(); b != nil {
		return b.B, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := slot.Load(); b != nil {
		return b.B, nil
	}
	b := bytebufferpool.Get()
	var err error
	b.B, err = appendDeflated(b.B[:0], s.op, s.plain.B[s.hdr:], huffman)
	if err != nil {
		bytebufferpool.Put(b)
		return nil, err
	}
	slot.Store(b)
	return b.B, nil
}
