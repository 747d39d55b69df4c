package frame

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// HeaderSize is the size of an unmasked (server) frame header for a payload
// of payloadLen bytes.
func HeaderSize(payloadLen int) int {
	switch {
	case payloadLen < 126:
		return 2
	case payloadLen <= 0xffff:
		return 4
	}
	return 10
}

func appendHeader(dst []byte, b0 byte, n int) []byte {
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
}

// AppendFrame appends a server frame (FIN, unmasked) to dst. It does not
// allocate when dst has room.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = appendHeader(dst, 0x80|byte(op), len(payload))
	return append(dst, payload...)
}

// AppendClose appends a close frame. The reason is cut (at a rune boundary)
// so the payload fits the 125 bytes allowed for control frames. Code 0 and
// ws.StatusNoStatusRcvd produce an empty close payload, since 1005 must never
// be put on the wire.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return append(dst, 0x88, 0)
	}
	if len(reason) > 123 {
		cut := 123
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = append(dst, 0x88, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}

// AppendDeflated appends op/payload as one compressed frame (RSV1, no
// context takeover: the compressor is reset for every message, so the bytes
// are valid on any connection that negotiated permessage-deflate with a
// 32 KiB server window). Control opcodes are never compressed: they are
// appended as AppendFrame would.
func AppendDeflated(dst []byte, op ws.OpCode, payload []byte) ([]byte, error) {
	return appendDeflated(dst, op, payload, false)
}

// AppendDeflatedHuffman is AppendDeflated for connections where HuffmanOnly
// is true.
func AppendDeflatedHuffman(dst []byte, op ws.OpCode, payload []byte) ([]byte, error) {
	return appendDeflated(dst, op, payload, true)
}

const maxServerHeader = 10

func appendDeflated(dst []byte, op ws.OpCode, payload []byte, huffman bool) ([]byte, error) {
	if op.IsControl() {
		return AppendFrame(dst, op, payload), nil
	}
	start := len(dst)
	// Compress behind room for the largest header, then slide the data
	// down to the real header size: no temporary buffer.
	dst = slices.Grow(dst, maxServerHeader+len(payload)/2+16)[:start+maxServerHeader]
	dst, err := compress(dst, payload, huffman)
	if err != nil {
		return dst[:start], err
	}
	clen := len(dst) - start - maxServerHeader
	hs := len(appendHeader(dst[start:start], 0xC0|byte(op), clen))
	copy(dst[start+hs:], dst[start+maxServerHeader:])
	return dst[:start+hs+clen], nil
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

type compressor struct {
	w  appendWriter
	fw *flate.Writer
}

// Compressors are shared by all connections (no context takeover means no
// per-connection state). Index 0: BestSpeed, 1: HuffmanOnly.
var compressorPools [2]sync.Pool

var syncTail = []byte{0, 0, 0xff, 0xff}

// compress appends the raw-deflate encoding of payload, sync-flushed with
// the 00 00 ff ff tail removed (RFC 7692 7.2.1).
func compress(dst, payload []byte, huffman bool) ([]byte, error) {
	i, level := 0, flate.BestSpeed
	if huffman {
		i, level = 1, flate.HuffmanOnly
	}
	c, _ := compressorPools[i].Get().(*compressor)
	if c == nil {
		c = new(compressor)
		fw, err := flate.NewWriter(&c.w, level)
		if err != nil {
			return dst, err
		}
		c.fw = fw
	}
	start := len(dst)
	c.w.b = dst
	c.fw.Reset(&c.w)
	_, err := c.fw.Write(payload)
	if err == nil {
		err = c.fw.Flush()
	}
	out := c.w.b
	c.w.b = nil
	compressorPools[i].Put(c)
	if err != nil {
		return out[:start], err
	}
	if len(out)-start >= 4 && bytes.Equal(out[len(out)-4:], syncTail) {
		out = out[:len(out)-4]
	}
	return out, nil
}
