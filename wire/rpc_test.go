package wire

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestDecodeRPCEveryEncoding: the rpc request's method and data decode from
// all four encodings (protobuf: ClientMessage.method = 40).
func TestDecodeRPCEveryEncoding(t *testing.T) {
	js := []byte(`{"type":"rpc","method":"orders.get","data":{"id":7},"id":"r1"}`)
	pb := protowire.AppendTag(nil, 1, protowire.BytesType)
	pb = protowire.AppendString(pb, "rpc")
	pb = protowire.AppendTag(pb, 40, protowire.BytesType)
	pb = protowire.AppendString(pb, "orders.get")
	pb = protowire.AppendTag(pb, 2, protowire.BytesType)
	pb = protowire.AppendString(pb, "r1")
	pbData, err := Transcode(nil, []byte(`{"id":7}`), CodecJSON, CodecProtobuf)
	if err != nil {
		t.Fatal(err)
	}
	pb = protowire.AppendTag(pb, 8, protowire.BytesType)
	pb = protowire.AppendBytes(pb, pbData)
	for _, c := range []Codec{CodecJSON, CodecMsgpack, CodecCBOR, CodecProtobuf} {
		in := js
		switch c {
		case CodecProtobuf:
			in = pb
		case CodecMsgpack, CodecCBOR:
			if in, err = Transcode(nil, js, CodecJSON, c); err != nil {
				t.Fatal(err)
			}
		}
		var e Envelope
		if err := c.Decode(in, &e); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if e.Type != TypeRPC || string(e.Method) != "orders.get" || string(e.ID) != "r1" {
			t.Fatalf("%s: %+v", c, e)
		}
		data := e.Data
		if c != CodecJSON {
			if data, err = Transcode(nil, e.Data, c, CodecJSON); err != nil {
				t.Fatalf("%s: data: %v", c, err)
			}
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil || v["id"] != 7.0 {
			t.Fatalf("%s: data %s (%v)", c, data, err)
		}
	}
	var e Envelope
	if err := CodecJSON.Decode([]byte(`{"type":"rpc","method":7,"id":"r"}`), &e); err != errMethodNotStr {
		t.Fatalf("numeric method: %v", err)
	}
}
