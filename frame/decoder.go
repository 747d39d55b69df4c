package frame

import (
	"encoding/binary"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/valyala/bytebufferpool"
)

// Limits are shared by all connections and must not change after the first
// Decoder.Init that uses them (decoders read them without synchronisation).
type Limits struct {
	// MaxMessageSize is the largest assembled message in bytes (sum of the
	// fragments' payloads), applied again to the inflated size of a
	// compressed message. Must be > 0.
	MaxMessageSize int
}

// Message is one decoded event: a whole data message or one control frame.
type Message struct {
	// Op is ws.OpText or ws.OpBinary for a data message (reassembled and
	// inflated), or ws.OpPing, ws.OpPong, ws.OpClose. Zero means no event.
	Op ws.OpCode
	// Payload is valid only until the next call to Next or Release.
	Payload []byte
	// CloseCode is the code of an OpClose frame, ws.StatusNoStatusRcvd when
	// its payload was empty.
	CloseCode ws.StatusCode
	// CloseReason is the reason of an OpClose frame (aliases Payload).
	CloseReason []byte
}

// ctlBuf collects a control frame whose payload is split across reads.
type ctlBuf struct {
	b [125]byte
	n uint8
}

var ctlPool = sync.Pool{New: func() any { return new(ctlBuf) }}

// Bits of Decoder.frame: the current frame's header, as sent.
const (
	fFin  = 0x80
	fRsv1 = 0x40
	fOp   = 0x0f
)

// Bits of Decoder.flags.
const (
	flDeflate    = 1 << iota // permessage-deflate was negotiated
	flCompressed             // the data message in progress has RSV1
	flRetainMsg              // d.msg holds the Payload returned last
	flRetainCtl              // d.ctl holds the Payload returned last
)

// Decoder is the per-connection streaming decoder. It lives in every
// connection, idle ones included, so it is kept to 64 bytes on 64-bit
// platforms: buffers are pointers to pooled objects acquired only while a
// message is being assembled (or while its payload is handed out), and the
// inflate dictionary exists only for connections that negotiated client
// context takeover.
//
// The zero value is unusable until Init.
type Decoder struct {
	limits *Limits
	msg    *bytebufferpool.ByteBuffer // data message being assembled / returned
	ctl    *ctlBuf                    // split control frame / returned
	infl   *inflateState              // non-nil iff client context takeover
	remain int                        // payload bytes of the current frame still to come

	hdr     [14]byte // partial header
	mask    [4]byte
	hdrLen  uint8 // bytes in hdr; 0 when not inside a header
	maskPos uint8 // mask offset for the next payload byte of the frame
	frame   uint8 // FIN|RSV1|opcode of the current frame
	msgOp   ws.OpCode
	flags   uint8
	utf8    UTF8
}

// Init prepares d for a new connection. It panics when l is nil or
// l.MaxMessageSize <= 0: a decoder without a limit would let any client
// make the server buffer unbounded data.
func (d *Decoder) Init(l *Limits) {
	if l == nil || l.MaxMessageSize <= 0 {
		panic("frame: Limits.MaxMessageSize must be > 0")
	}
	d.Release()
	d.limits = l
}

// EnableDeflate turns on permessage-deflate decoding with the negotiated
// parameters. Call it after Init and before the first Next. Unless the
// client promised client_no_context_takeover, the decoder then keeps the
// last 32 KiB of inflated output between messages (the client's window).
func (d *Decoder) EnableDeflate(p wsflate.Parameters) {
	d.flags |= flDeflate
	if !p.ClientNoContextTakeover && d.infl == nil {
		d.infl = new(inflateState)
	}
}

// Release returns all pooled buffers. Afterwards d is zero; Init it again to
// reuse it.
func (d *Decoder) Release() {
	if d.msg != nil {
		bytebufferpool.Put(d.msg)
	}
	if d.ctl != nil {
		ctlPool.Put(d.ctl)
	}
	*d = Decoder{}
}

// InMessage reports whether a frame or a fragmented message is partially
// received (the connection is not at a message boundary).
func (d *Decoder) InMessage() bool {
	return d.hdrLen != 0 || d.remain != 0 || d.msgOp != 0
}

// Next decodes from p. It returns how many bytes it consumed and at most one
// complete event (m.Op == 0: none yet, and then all of p was consumed and
// kept as partial state). The bytes of p it consumes may be modified in
// place (unmasked). A Payload from a previous call becomes invalid.
//
// Calling Next with an empty p does nothing but return the buffer behind the
// previous Payload to the pool; an engine that wants idle connections to
// hold no buffers calls d.Next(nil) after its read loop.
//
// After an error the connection must be closed: d is in an undefined state
// (Release is still safe).
func (d *Decoder) Next(p []byte) (n int, m Message, err error) {
	if d.flags&(flRetainMsg|flRetainCtl) != 0 {
		d.dropRetained()
	}
	for n < len(p) {
		if d.remain == 0 {
			hn, ok, err := d.readHeader(p[n:])
			n += hn
			if err != nil || !ok {
				return n, Message{}, err
			}
			op := ws.OpCode(d.frame & fOp)
			if op.IsControl() {
				if d.remain <= len(p)-n {
					// Whole control frame in p: unmask in place.
					pl := p[n : n+d.remain]
					n += d.remain
					d.remain = 0
					ws.Cipher(pl, d.mask, 0)
					m, err = d.control(pl)
					return n, m, err
				}
				d.ctl = ctlPool.Get().(*ctlBuf)
				d.ctl.n = 0
			} else {
				if d.frame&fFin != 0 && d.msgOp == 0 && d.remain <= len(p)-n {
					// Fast path: a whole unfragmented message in p.
					pl := p[n : n+d.remain]
					n += d.remain
					d.remain = 0
					ws.Cipher(pl, d.mask, 0)
					if d.frame&fRsv1 != 0 {
						m, err = d.inflateMessage(op, pl)
						return n, m, err
					}
					if op == ws.OpText && !ValidUTF8(pl) {
						return n, Message{}, errInvalidUTF8
					}
					return n, Message{Op: op, Payload: pl}, nil
				}
				d.startData(op)
			}
		}
		k := min(d.remain, len(p)-n)
		chunk := p[n : n+k]
		n += k
		d.remain -= k
		if err := d.consume(chunk); err != nil {
			return n, Message{}, err
		}
		if d.remain > 0 {
			return n, Message{}, nil
		}
		if m, err = d.frameDone(); err != nil || m.Op != 0 {
			return n, m, err
		}
	}
	return n, Message{}, nil
}

func (d *Decoder) dropRetained() {
	if d.flags&flRetainMsg != 0 {
		bytebufferpool.Put(d.msg)
		d.msg = nil
	}
	if d.flags&flRetainCtl != 0 {
		ctlPool.Put(d.ctl)
		d.ctl = nil
	}
	d.flags &^= flRetainMsg | flRetainCtl
}

// startData prepares the message buffer for a data frame whose payload is
// not wholly in the current read (or that is one fragment of several).
func (d *Decoder) startData(op ws.OpCode) {
	if op != ws.OpContinuation {
		d.msgOp = op
		if d.frame&fRsv1 != 0 {
			d.flags |= flCompressed
		} else {
			d.flags &^= flCompressed
		}
		d.utf8.Reset()
	}
	if d.msg == nil {
		d.msg = bytebufferpool.Get()
		d.msg.B = d.msg.B[:0]
	}
	// Reserve what the header announced, but no more than 64 KiB ahead of
	// the data: a client announcing a huge frame and sending nothing must
	// not pin MaxMessageSize per connection.
	if want := len(d.msg.B) + min(d.remain, 64<<10); cap(d.msg.B) < want {
		b := make([]byte, len(d.msg.B), want)
		copy(b, d.msg.B)
		d.msg.B = b
	}
}

// readHeader consumes header bytes from p. It validates the first two bytes
// as soon as they are known, so a bad frame fails before its length and mask
// arrive.
func (d *Decoder) readHeader(p []byte) (int, bool, error) {
	if d.hdrLen == 0 {
		if len(p) >= 2 {
			if err := d.check(p[0], p[1]); err != nil {
				return 0, false, err
			}
			if size := headerLen(p[1]); len(p) >= size {
				return size, true, d.parse(p[:size])
			}
		}
		d.hdrLen = uint8(copy(d.hdr[:], p)) // len(p) < header size <= 14
		return len(p), false, nil
	}
	n := 0
	if d.hdrLen == 1 {
		d.hdr[1] = p[0]
		d.hdrLen = 2
		n = 1
		if err := d.check(d.hdr[0], d.hdr[1]); err != nil {
			return n, false, err
		}
	}
	size := headerLen(d.hdr[1])
	c := copy(d.hdr[d.hdrLen:size], p[n:])
	n += c
	d.hdrLen += uint8(c)
	if int(d.hdrLen) < size {
		return n, false, nil
	}
	d.hdrLen = 0
	return n, true, d.parse(d.hdr[:size])
}

// headerLen is the size of a client header (always masked) given byte 1.
func headerLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

func (d *Decoder) check(b0, b1 byte) error {
	op := ws.OpCode(b0 & fOp)
	switch op {
	case ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong:
	default:
		return errBadOpcode
	}
	if b0&0x30 != 0 {
		return errReservedBits
	}
	if b0&fRsv1 != 0 && (d.flags&flDeflate == 0 || op.IsControl() || op == ws.OpContinuation) {
		return errReservedBits
	}
	if b1&0x80 == 0 {
		return errUnmasked
	}
	if op.IsControl() {
		if b0&fFin == 0 {
			return errFragmentedControl
		}
		if b1&0x7f > 125 {
			return errControlTooLong
		}
		return nil
	}
	if (op == ws.OpContinuation) != (d.msgOp != 0) {
		return errBadContinuation
	}
	return nil
}

// parse reads length and mask from a complete, already checked header.
func (d *Decoder) parse(h []byte) error {
	d.frame = h[0] & (fFin | fRsv1 | fOp)
	var length uint64
	switch l := h[1] & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:])
		if length>>63 != 0 {
			return errBadLength
		}
	default:
		length = uint64(l)
	}
	if h[0]&0x08 == 0 { // data frame
		cur := 0
		if d.msgOp != 0 && d.msg != nil {
			cur = len(d.msg.B)
		}
		if length > uint64(d.limits.MaxMessageSize-cur) {
			return errTooLarge
		}
	}
	copy(d.mask[:], h[len(h)-4:])
	d.maskPos = 0
	d.remain = int(length)
	return nil
}

// consume unmasks a piece of the current frame's payload (in place) and
// stores it.
func (d *Decoder) consume(chunk []byte) error {
	if len(chunk) == 0 {
		return nil
	}
	ws.Cipher(chunk, d.mask, int(d.maskPos))
	d.maskPos = uint8((int(d.maskPos) + len(chunk)) & 3)
	if d.frame&0x08 != 0 {
		d.ctl.n += uint8(copy(d.ctl.b[d.ctl.n:], chunk))
		return nil
	}
	d.msg.B = append(d.msg.B, chunk...)
	if d.msgOp == ws.OpText && d.flags&flCompressed == 0 && !d.utf8.Write(chunk) {
		return errInvalidUTF8
	}
	return nil
}

// frameDone is called when the last payload byte of a buffered frame has
// been consumed.
func (d *Decoder) frameDone() (Message, error) {
	if d.frame&0x08 != 0 {
		d.flags |= flRetainCtl
		return d.control(d.ctl.b[:d.ctl.n])
	}
	if d.frame&fFin == 0 {
		return Message{}, nil
	}
	op := d.msgOp
	d.msgOp = 0
	if d.flags&flCompressed != 0 {
		src := d.msg
		d.msg = nil
		m, err := d.inflateMessage(op, src.B)
		bytebufferpool.Put(src)
		return m, err
	}
	if op == ws.OpText && !d.utf8.Complete() {
		return Message{}, errInvalidUTF8
	}
	d.flags |= flRetainMsg
	return Message{Op: op, Payload: d.msg.B}, nil
}

// control builds the event for a complete, unmasked control frame.
func (d *Decoder) control(pl []byte) (Message, error) {
	op := ws.OpCode(d.frame & fOp)
	if op != ws.OpClose {
		return Message{Op: op, Payload: pl}, nil
	}
	switch len(pl) {
	case 0:
		return Message{Op: ws.OpClose, Payload: pl, CloseCode: ws.StatusNoStatusRcvd}, nil
	case 1:
		return Message{}, errBadClosePayload
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(pl))
	if !validReceivedCloseCode(code) {
		return Message{}, errBadCloseCode
	}
	reason := pl[2:]
	if !ValidUTF8(reason) {
		return Message{}, errInvalidUTF8
	}
	return Message{Op: ws.OpClose, Payload: pl, CloseCode: code, CloseReason: reason}, nil
}

// validReceivedCloseCode reports whether a peer may send code (RFC 6455
// 7.4, IANA registry): 1004-1006 and 1015 are reserved or local-only,
// 1016-2999 are reserved for future protocol use, 3000-4999 are for
// libraries and applications. Autobahn 7.7.x / 7.9.x agree.
func validReceivedCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
