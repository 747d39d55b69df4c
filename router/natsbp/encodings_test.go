package natsbp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wsgate/wsgate/auth"
	clientwire "github.com/wsgate/wsgate/wire"
)

// encClient is a client of one of the four encodings. Frames are built and
// read with the reference libraries where there is one (fxamacker/cbor,
// google.golang.org/protobuf), so the gateway's hand-written codecs are
// checked against them, not against themselves; msgpack goes through the
// wire package's transcoder, which its own fuzzers prove equal to JSON.
type encClient struct {
	t     *testing.T
	user  string
	codec clientwire.Codec
	conn  *websocket.Conn
}

func dialEnc(t *testing.T, in *instance, user string, codec clientwire.Codec) *encClient {
	t.Helper()
	tok, err := auth.MintHS256(secret, auth.Claims{Sub: user}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{Subprotocols: []string{codec.Subprotocol()}}
	conn, resp, err := d.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		t.Fatalf("dial %s: %v", codec, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != codec.Subprotocol() {
		t.Fatalf("subprotocol %q, want %q", got, codec.Subprotocol())
	}
	c := &encClient{t: t, user: user, codec: codec, conn: conn}
	c.expect("auth:ok")
	return c
}

// send encodes m (string fields, and data as any JSON value) in the
// client's encoding.
func (c *encClient) send(m map[string]any) {
	c.t.Helper()
	var b []byte
	var err error
	op := websocket.BinaryMessage
	switch c.codec {
	case clientwire.CodecJSON:
		op = websocket.TextMessage
		b, err = json.Marshal(m)
	case clientwire.CodecMsgpack:
		var j []byte
		if j, err = json.Marshal(m); err == nil {
			b, err = clientwire.JSONToMsgpack(nil, j)
		}
	case clientwire.CodecCBOR:
		b, err = cbor.Marshal(m)
	case clientwire.CodecProtobuf:
		b, err = protoClientMessage(m)
	}
	if err != nil {
		c.t.Fatalf("%s: encode %v: %v", c.codec, m, err)
	}
	if err := c.conn.WriteMessage(op, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.codec, err)
	}
}

// protoClientMessage builds a wsgate.v1.ClientMessage (docs/wsgate.proto):
// type 1, id 2, room 4, data 8 (google.protobuf.Value), method 40.
func protoClientMessage(m map[string]any) ([]byte, error) {
	var b []byte
	for _, f := range []struct {
		key string
		num protowire.Number
	}{{"type", 1}, {"id", 2}, {"room", 4}, {"method", 40}} {
		if s, ok := m[f.key].(string); ok {
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	if d, ok := m["data"]; ok {
		v, err := structpb.NewValue(d)
		if err != nil {
			return nil, err
		}
		vb, err := proto.Marshal(v)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, vb)
	}
	return b, nil
}

// read returns the next message as a JSON-shaped map (numbers float64).
func (c *encClient) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	op, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", c.codec, c.user, err)
	}
	if want := c.codec.Binary(); (op == websocket.BinaryMessage) != want {
		c.t.Fatalf("%s: frame opcode %d", c.codec, op)
	}
	var m map[string]any
	switch c.codec {
	case clientwire.CodecJSON:
		err = json.Unmarshal(b, &m)
	case clientwire.CodecMsgpack:
		var j []byte
		if j, err = clientwire.MsgpackToJSON(nil, b); err == nil {
			err = json.Unmarshal(j, &m)
		}
	case clientwire.CodecCBOR:
		var v any
		dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any(nil))}.DecMode()
		if err = dm.Unmarshal(b, &v); err == nil {
			m, err = jsonShaped(v)
		}
	case clientwire.CodecProtobuf:
		m, err = protoServerMessage(b)
	}
	if err != nil {
		c.t.Fatalf("%s: decode %x: %v", c.codec, b, err)
	}
	return m
}

// protoServerMessage reads the fields of a wsgate.v1.ServerMessage this
// tests look at: type 1, id 2, room 3, from 6, data 7, conn 11, reason 13,
// code 14, message 15.
func protoServerMessage(b []byte) (map[string]any, error) {
	m := map[string]any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		field := b[:n]
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		v, _ := protowire.ConsumeBytes(field)
		switch num {
		case 1:
			m["type"] = string(v)
		case 2:
			m["id"] = string(v)
		case 3:
			m["room"] = string(v)
		case 6:
			m["from"] = string(v)
		case 11:
			m["conn"] = string(v)
		case 13:
			m["reason"] = string(v)
		case 14:
			m["code"] = string(v)
		case 15:
			m["message"] = string(v)
		case 7:
			var val structpb.Value
			if err := proto.Unmarshal(v, &val); err != nil {
				return nil, err
			}
			m["data"] = val.AsInterface()
		}
	}
	return jsonShaped(m)
}

// jsonShaped normalises a decoded value to what encoding/json produces.
func jsonShaped(v any) (map[string]any, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(j, &m)
}

func (c *encClient) expect(typ string) map[string]any {
	c.t.Helper()
	for {
		m := c.read()
		if m["type"] == typ {
			return m
		}
		if m["type"] == "gap" || m["type"] == "user:joined" {
			continue
		}
		c.t.Fatalf("%s %s: got %v, want %s", c.codec, c.user, m, typ)
	}
}

// Issue 10's acceptance test: clients of all four encodings in one room, on
// two instances over a real NATS server, each receive every message in
// their own encoding with data equal under the documented mappings.
func TestFourEncodingsOneRoomTwoInstances(t *testing.T) {
	ns := startNATS(t, 0)
	a := startInstance(t, "a", Options{URLs: []string{ns.ClientURL()}})
	b := startInstance(t, "b", Options{URLs: []string{ns.ClientURL()}})
	codecs := []clientwire.Codec{clientwire.CodecJSON, clientwire.CodecMsgpack, clientwire.CodecCBOR, clientwire.CodecProtobuf}
	var clients []*encClient
	for i, codec := range codecs {
		for j, in := range []*instance{a, b} { // every encoding on both instances
			c := dialEnc(t, in, fmt.Sprintf("%s-%d-%d", codec, i, j), codec)
			c.send(map[string]any{"type": "join", "room": "mixed", "id": "j"})
			c.expect("joined")
			clients = append(clients, c)
		}
	}
	dataOf := func(sender int) any {
		return map[string]any{
			"text":   fmt.Sprintf("hi from %d é✓", sender),
			"n":      []any{float64(sender), 2.5, nil, true, -7.0},
			"nested": map[string]any{"k": "v", "empty": []any{}},
		}
	}
	for i, c := range clients {
		c.send(map[string]any{"type": "message", "room": "mixed", "data": dataOf(i), "id": fmt.Sprint("m", i)})
	}
	// Every client gets its ack and every other client's message once, with
	// data equal as a JSON value, and one gateway id per message across
	// encodings.
	ids := map[string]string{} // data text -> gateway id
	for r, c := range clients {
		got := map[string]bool{}
		acked := false
		for !acked || len(got) < len(clients)-1 {
			m := c.read()
			switch m["type"] {
			case "ack":
				if acked || m["id"] != fmt.Sprint("m", r) {
					t.Fatalf("%s: ack %v", c.codec, m)
				}
				acked = true
				continue
			case "message":
			case "gap":
				t.Fatalf("%s %s: %v", c.codec, c.user, m)
			default:
				continue // user:joined and the like
			}
			if m["room"] != "mixed" {
				t.Fatalf("%s: %v", c.codec, m)
			}
			text, _ := m["data"].(map[string]any)["text"].(string)
			var sender int
			if _, err := fmt.Sscanf(text, "hi from %d", &sender); err != nil || sender == r || got[text] {
				t.Fatalf("%s %s: unexpected or repeated message %v", c.codec, c.user, m)
			}
			got[text] = true
			if want := dataOf(sender); !reflect.DeepEqual(m["data"], want) {
				t.Fatalf("%s from %s: data %#v, want %#v", c.codec, clients[sender].codec, m["data"], want)
			}
			if m["from"] != clients[sender].user {
				t.Fatalf("%s: from %v, want %s", c.codec, m["from"], clients[sender].user)
			}
			id, _ := m["id"].(string)
			if prev, ok := ids[text]; ok && prev != id {
				t.Fatalf("message %q has id %q in %s, %q elsewhere", text, id, c.codec, prev)
			}
			ids[text] = id
		}
	}
}
