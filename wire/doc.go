// Package wire is the client wire format of wsgate (PROTOCOL.md sections
// 2-5, 8): the Envelope every encoding decodes a client message into, its
// validation and naming rules, publish filters, the Codec through which the
// gateway writes every reply and event in the connection's encoding, and
// the transcoding of `data` between encodings.
//
// It is a leaf like package frame: it imports no gnet, no NATS, no routing
// and no engine, so the router, the backplane and the load harness can all
// use it.
//
// # Layout
//
//	envelope.go   Envelope, MsgType, Priority, Validate, ProtocolError
//	codec.go      Codec: subprotocol names, frame kind, Decode dispatch
//	reply.go      Delivery and the Codec.Append* reply/event encoders
//	writer.go     objWriter, the encoding-parallel writer behind reply.go
//	names.go      ValidName (PROTOCOL.md section 5)
//	filter.go     Filter and ParseFilter (publish `filter`)
//	json.go       gw.json: DecodeJSON, scanner, writer primitives, filter reader
//	msgpack.go    gw.msgpack: DecodeMsgpack, header reader, writer primitives,
//	              filter reader
//	protobuf.go   gw.protobuf (schema docs/wsgate.proto): DecodeProtobuf,
//	              ServerMessage writer, filter reader, JSONToProtobuf and
//	              ProtobufToJSON
//	cbor.go       gw.cbor: DecodeCBOR, head reader, validator, writer primitives,
//	              filter reader, CBOR<->JSON and CBOR<->msgpack transcoding
//	transcode.go  Transcode dispatch; JSONToMsgpack and MsgpackToJSON
//
// # Ownership
//
// Everything here is a pure function over caller-owned memory: decoders fill
// a caller's Envelope (whose scratch buffer the caller keeps, one per event
// loop, so that decoding allocates nothing), encoders append to a caller's
// slice. Shared values (the *ProtocolError results, name tables) are
// read-only, and a parsed Filter is immutable; all are safe from any
// goroutine.
package wire
