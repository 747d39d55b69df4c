// Package frame is wsgate's WebSocket codec: RFC 6455 framing and RFC 7692
// permessage-deflate over byte slices, server side only (it decodes masked
// client frames and encodes unmasked server frames). It does no I/O, starts
// no goroutines and knows nothing of gnet, so the engine can run it directly
// on its event loops and tests can drive it with plain byte vectors.
//
// # Ownership
//
// Every type here is owned by one goroutine, the connection's event loop,
// except Shared, which is safe for concurrent use:
//
//   - Decoder: one per connection, used only by the loop that owns the
//     connection (Init, EnableDeflate, Next, InMessage, Release). A Payload
//     it returns is valid only until that decoder's next Next or Release,
//     so copy it before handing it to another goroutine.
//   - DeflateNegotiator: one per upgrade, used by the goroutine doing the
//     handshake; pass Accepted() to the connection's Decoder.EnableDeflate.
//   - UTF8: a value type owned by whoever embeds it.
//   - Limits: shared read-only by all decoders; never modified after start.
//   - Shared: created anywhere (typically the broadcasting goroutine),
//     Retain/Release/Bytes/Deflated/DeflatedHuffman from any goroutine.
//   - AppendFrame, AppendClose, AppendDeflated, AppendDeflatedHuffman,
//     HeaderSize, ValidUTF8, HuffmanOnly: pure functions, callable from
//     anywhere (the compressors are pooled and shared safely).
//
// # Decoding
//
// Decoder.Next is built for an event loop that hands it whatever bytes
// arrived: it consumes everything it can, keeps partial headers (up to 14
// bytes) inside the Decoder and partial payloads in a pooled buffer, and
// returns at most one event per call:
//
//	for len(p) > 0 {
//		n, m, err := d.Next(p)
//		p = p[n:]
//		if err != nil { /* errors.As(err, &ce): send close ce.Code, close */ }
//		if m.Op == 0 { break }
//		handle(m) // m.Payload valid until the next Next
//	}
//	d.Next(nil) // optional: let an idle connection return the last buffer
//
// The common case, a small complete frame inside p, is unmasked in place
// and returned as a slice of p with no copy and no allocation. Everything
// else (fragments, frames split across reads, compressed messages) is
// assembled in a pooled buffer acquired for that message only, so a
// connection between messages holds no buffer. The Decoder itself is 64
// bytes.
//
// Every protocol violation is a *CloseError carrying the close code to send
// (1002 protocol, 1007 bad UTF-8 or bad compressed data, 1009 too big); the
// values are pre-allocated and wrap package sentinels for errors.Is. Sizes
// are checked against Limits.MaxMessageSize as soon as a header announces
// them and again while inflating (which is capped, so decompression bombs
// cost at most the limit). Text is validated incrementally as it arrives,
// so an invalid prefix fails at once even if the rest never comes.
//
// # Encoding and deflate
//
// The server never keeps compressor state (it always negotiates
// server_no_context_takeover): a frame is compressed once and the same
// bytes are valid on every deflate connection, which is what makes Shared
// broadcast cheap. Clients may still use context takeover; the Decoder then
// keeps their 32 KiB window. Clients that limit server_max_window_bits get
// Huffman-only output (see HuffmanOnly) because compress/flate cannot
// shrink its window.
//
// # API summary (for the engine)
//
//	Limits{MaxMessageSize int}                    shared, immutable
//	(*Decoder).Init(*Limits)                      per connection, on its loop
//	(*Decoder).EnableDeflate(wsflate.Parameters)  after negotiation, before Next
//	(*Decoder).Next(p) (n, Message, error)        error is a *CloseError
//	(*Decoder).InMessage() bool                   not at a message boundary
//	(*Decoder).Release()                          on close; Init to reuse
//	AppendFrame / AppendClose / HeaderSize        plain server frames
//	AppendDeflated / AppendDeflatedHuffman        compressed one-off replies
//	NewShared -> Retain/Release/Bytes/Deflated/DeflatedHuffman   broadcast
//	DeflateNegotiator.Negotiate / Accepted        ws.Upgrader.Negotiate hook
//	HuffmanOnly(params)                           which compressed variant
//	UTF8 / ValidUTF8                              incremental / whole text
//
// Choices worth knowing:
//   - Corrupt compressed data closes with 1007 (the payload is not the
//     compressed message it claims to be).
//   - Close codes accepted from clients: 1000-1003, 1007-1014, 3000-4999
//     (gorilla/websocket also rejects 1014; RFC/IANA list it as usable).
//   - A compressed frame with an empty payload is accepted as an empty
//     message (strictly it should be 0x00), as browsers and most servers do.
//   - AppendClose with ws.StatusNoStatusRcvd (or 0) sends an empty close
//     payload; the engine must not send 1006 or 1015 itself.
package frame
