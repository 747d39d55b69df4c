package wire

// This file holds Codec, the one value through which callers pick an
// encoding: which subprotocol a connection negotiated, whether its frames are
// binary, and which decoder and reply writer it uses. Adding an encoding
// means a new Codec constant here, its decoder and writer primitives in a
// file of its own (json.go, msgpack.go, cbor.go), and the cases that dispatch to them
// (Decode below, objWriter in writer.go, Transcode in transcode.go).

// Codec is a subprotocol's encoding. It is a small value so that a connection
// can store it and call codec.AppendError(dst, ...) without an interface call.
type Codec uint8

// Codecs.
const (
	CodecJSON     Codec = iota // gw.json, text frames
	CodecMsgpack               // gw.msgpack, binary frames
	CodecCBOR                  // gw.cbor, binary frames (PROTOCOL.md section 13)
	CodecProtobuf              // gw.protobuf, binary frames (PROTOCOL.md section 13)

	// NumCodecs sizes per-codec tables (a message's frame per encoding).
	NumCodecs = int(iota)
)

// Subprotocol names (PROTOCOL.md section 2).
const (
	SubprotocolJSON     = "gw.json"
	SubprotocolMsgpack  = "gw.msgpack"
	SubprotocolCBOR     = "gw.cbor"
	SubprotocolProtobuf = "gw.protobuf"
)

// ParseCodec maps a WebSocket subprotocol name to its Codec.
func ParseCodec(subprotocol string) (Codec, bool) {
	switch subprotocol {
	case SubprotocolJSON:
		return CodecJSON, true
	case SubprotocolMsgpack:
		return CodecMsgpack, true
	case SubprotocolProtobuf:
		return CodecProtobuf, true
	case SubprotocolCBOR:
		return CodecCBOR, true
	}
	return CodecJSON, false
}

// Subprotocol returns the WebSocket subprotocol name of c.
func (c Codec) Subprotocol() string {
	switch c {
	case CodecMsgpack:
		return SubprotocolMsgpack
	case CodecProtobuf:
		return SubprotocolProtobuf
	case CodecCBOR:
		return SubprotocolCBOR
	}
	return SubprotocolJSON
}

// String returns the subprotocol name.
func (c Codec) String() string { return c.Subprotocol() }

// Binary reports whether messages of c travel in binary frames (else text).
func (c Codec) Binary() bool { return c != CodecJSON }

// Decode decodes one client message in codec c into e.
func (c Codec) Decode(p []byte, e *Envelope) error {
	switch c {
	case CodecMsgpack:
		return DecodeMsgpack(p, e)
	case CodecProtobuf:
		return DecodeProtobuf(p, e)
	case CodecCBOR:
		return DecodeCBOR(p, e)
	}
	return DecodeJSON(p, e)
}
