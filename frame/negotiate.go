package frame

import (
	"bytes"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// DeflateNegotiator negotiates permessage-deflate (RFC 7692) for one
// upgrade; plug its Negotiate method into ws.Upgrader.Negotiate. The zero
// value is ready; use a fresh one (or a zeroed one) per upgrade.
//
// The server always answers server_no_context_takeover: frames are encoded
// once for many connections (Shared), so there is no per-connection
// compressor. Client context takeover is supported (the Decoder keeps the
// inflate window) unless the client offers client_no_context_takeover.
// server_max_window_bits < 15 is accepted, and then HuffmanOnly(params) is
// true. Malformed offers (unknown, duplicated or invalid parameters) are
// declined so the next offer can be tried.
type DeflateNegotiator struct {
	params   wsflate.Parameters
	accepted bool
}

const (
	pServerNoCtx = 1 << iota
	pClientNoCtx
	pServerBits
	pClientBits
)

// Negotiate accepts the first well-formed permessage-deflate offer. The
// returned option refers only to static memory, not to opt.
func (n *DeflateNegotiator) Negotiate(opt httphead.Option) (httphead.Option, error) {
	if n.accepted || !bytes.Equal(opt.Name, wsflate.ExtensionNameBytes) {
		return httphead.Option{}, nil
	}
	var p wsflate.Parameters
	var seen uint8
	ok := true
	opt.Parameters.ForEach(func(key, val []byte) bool {
		var bit uint8
		switch string(key) {
		case "server_no_context_takeover":
			bit = pServerNoCtx
			ok = len(val) == 0
		case "client_no_context_takeover":
			bit = pClientNoCtx
			ok = len(val) == 0
			p.ClientNoContextTakeover = true
		case "server_max_window_bits":
			bit = pServerBits
			p.ServerMaxWindowBits, ok = windowBits(val)
		case "client_max_window_bits":
			bit = pClientBits
			if len(val) == 0 {
				// "I can use any window": answer with the full one.
				p.ClientMaxWindowBits = 15
			} else {
				p.ClientMaxWindowBits, ok = windowBits(val)
			}
		default:
			ok = false
		}
		if seen&bit != 0 {
			ok = false
		}
		seen |= bit
		return ok
	})
	if !ok {
		return httphead.Option{}, nil
	}
	p.ServerNoContextTakeover = true
	n.params = p
	n.accepted = true
	return p.Option(), nil
}

// Accepted returns the negotiated parameters (pass them to
// Decoder.EnableDeflate and HuffmanOnly) and whether an offer was accepted.
func (n *DeflateNegotiator) Accepted() (wsflate.Parameters, bool) {
	return n.params, n.accepted
}

func windowBits(val []byte) (wsflate.WindowBits, bool) {
	v, ok := httphead.IntFromASCII(val)
	if !ok || v < 8 || v > 15 {
		return 0, false
	}
	return wsflate.WindowBits(v), true
}

// HuffmanOnly reports whether frames for a connection with negotiated
// parameters p must be compressed without back-references: Go's
// compress/flate cannot shrink its 32 KiB window, so when the client asked
// for server_max_window_bits < 15 the only conforming output is
// Huffman-only. Use Shared.DeflatedHuffman and AppendDeflatedHuffman then.
func HuffmanOnly(p wsflate.Parameters) bool {
	return p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15
}
