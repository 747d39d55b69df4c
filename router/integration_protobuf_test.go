package router

// gw.protobuf clients against a real gateway, next to gw.json and
// gw.msgpack clients. The protobuf side of these tests is built on the
// library (protowire for the envelope, structpb/protojson for `data`), not
// on package wire's encoder, so that the gateway is checked against an
// independent reading of docs/wsgate.proto.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// pbClientFields are ClientMessage's fields (docs/wsgate.proto) by JSON name.
var pbClientFields = map[string]protowire.Number{
	"type": 1, "id": 2, "token": 3, "room": 4, "filter": 5, "channel": 6, "to": 7, "data": 8, "priority": 9, "since": 10,
}

// pbServerFields are ServerMessage's fields by number: JSON name and kind
// ('s' string, 'S' repeated string, 'v' Value, 'u' uint64, 'i' int64, 'b' bool).
var pbServerFields = map[protowire.Number]struct {
	name string
	kind byte
}{
	1: {"type", 's'}, 2: {"id", 's'}, 3: {"room", 's'}, 4: {"channel", 's'}, 5: {"to", 's'}, 6: {"from", 's'},
	7: {"data", 'v'}, 8: {"seq", 'u'}, 9: {"ts", 'i'}, 10: {"user", 's'}, 11: {"conn", 's'}, 12: {"instance", 's'},
	13: {"reason", 's'}, 14: {"code", 's'}, 15: {"message", 's'}, 16: {"users", 'S'}, 17: {"recovered", 'b'},
	18: {"dropped", 'u'}, 19: {"delivered", 'i'}, 20: {"remote", 'b'}, 21: {"after_ms", 'i'}, 22: {"mid", 's'},
	30: {"exp", 'i'}, 31: {"close_in_ms", 'i'},
}

// pbEncodeClient turns a gw.json client object into a ClientMessage.
func pbEncodeClient(t testing.TB, js string) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(js)))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("test message %s: %v", js, err)
	}
	var b []byte
	for k, v := range obj {
		num, ok := pbClientFields[k]
		if !ok {
			t.Fatalf("%s: no field %q in ClientMessage", js, k)
		}
		switch k {
		case "since":
			n, err := v.(json.Number).Int64()
			if err != nil {
				t.Fatal(err)
			}
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(n))
		case "data", "filter":
			var raw json.RawMessage
			raw, _ = json.Marshal(v)
			var m proto.Message
			if k == "data" {
				m = new(structpb.Value)
			} else {
				m = new(structpb.Struct)
			}
			if err := protojson.Unmarshal(raw, m); err != nil {
				t.Fatalf("%s: %s: %v", js, k, err)
			}
			enc, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, enc)
		default:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v.(string))
		}
	}
	return b
}

// pbDecodeServer reads a ServerMessage into gw.json values (numbers float64).
func pbDecodeServer(b []byte) (map[string]any, error) {
	out := map[string]any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		f, known := pbServerFields[num]
		wantTyp := protowire.BytesType
		if f.kind == 'u' || f.kind == 'i' || f.kind == 'b' {
			wantTyp = protowire.VarintType
		}
		if !known || typ != wantTyp {
			return nil, fmt.Errorf("field %d (wire type %d) not in ServerMessage", num, typ)
		}
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			switch f.kind {
			case 'u':
				out[f.name] = float64(v)
			case 'i':
				out[f.name] = float64(int64(v))
			default:
				out[f.name] = v != 0
			}
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch f.kind {
		case 's':
			out[f.name] = string(v)
		case 'S':
			list, _ := out[f.name].([]any)
			out[f.name] = append(list, string(v))
		case 'v':
			val := new(structpb.Value)
			if err := proto.Unmarshal(v, val); err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			js, err := protojson.Marshal(val)
			if err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			var x any
			if err := json.Unmarshal(js, &x); err != nil {
				return nil, err
			}
			out[f.name] = x
		}
	}
	return out, nil
}

// pbClient is a gw.protobuf connection: a tclient whose messages are read
// and written as ServerMessage and ClientMessage.
type pbClient struct {
	*tclient
}

// pbUser connects with claims cl offering gw.protobuf and consumes auth:ok.
func (g *gateway) pbUser(cl auth.Claims) *pbClient {
	g.t.Helper()
	c := &pbClient{g.connect(dialOpts{query: token(g.t, cl), protocols: []string{wire.SubprotocolProtobuf}})}
	if got := c.conn.Subprotocol(); got != wire.SubprotocolProtobuf {
		g.t.Fatalf("subprotocol %q, want %q", got, wire.SubprotocolProtobuf)
	}
	if m := c.expect("auth:ok"); m["user"] != cl.Sub {
		g.t.Fatalf("auth:ok %v, want user %q", m, cl.Sub)
	}
	c.user = cl.Sub
	return c
}

func (c *pbClient) send(js string) {
	c.t.Helper()
	c.sendRaw(websocket.BinaryMessage, pbEncodeClient(c.t, js))
}

func (c *pbClient) read() map[string]any {
	c.t.Helper()
	m, ok := c.next(waitFor)
	if !ok {
		c.t.Fatalf("%s: no message within %v (reader: %v)", c, waitFor, c.readErr())
	}
	if m.op != websocket.BinaryMessage {
		c.t.Fatalf("%s: frame type %d on gw.protobuf (%q)", c, m.op, m.raw)
	}
	out, err := pbDecodeServer(m.raw)
	if err != nil {
		c.t.Fatalf("%s: undecodable ServerMessage % x: %v", c, m.raw, err)
	}
	return out
}

func (c *pbClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("%s: got %v, want type %q", c, m, typ)
	}
	return m
}

func (c *pbClient) join(room string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"join","room":%q,"id":"j-%s"}`, room, room))
	if m := c.expect("joined"); m["room"] != room || m["id"] != "j-"+room {
		c.t.Fatalf("%s: joined %v", c, m)
	}
}

// alive checks that the connection still works: a ping gets its pong.
func (c *pbClient) alive() {
	c.t.Helper()
	c.send(`{"type":"ping","id":"alive"}`)
	if m := c.expect("pong"); m["id"] != "alive" {
		c.t.Fatalf("%s: pong %v without the ping's id", c, m)
	}
}

// pbMixData exercises every JSON kind; its integer beyond 2^53 arrives at
// gw.protobuf clients rounded to a double, which is what a float64 reading
// of the JSON gives everyone else too.
const pbMixData = `{"s":"héllo\n","i":-7,"u":18446744073709551615,"f":0.25,"b":[true,false,null],"o":{"k":"v","e":{}},"l":[]}`

// mixMember is a room member of any encoding, named "user/subprotocol";
// send and read speak gw.json to the test and the member's encoding to the
// gateway.
type mixMember struct {
	name string
	send func(js string)
	read func() map[string]any
}

func jsonMember(c *tclient) mixMember {
	return mixMember{name: c.user + "/" + c.codec.String(), send: func(js string) { c.send(js) }, read: c.read}
}

func pbMember(c *pbClient) mixMember {
	return mixMember{name: c.user + "/gw.protobuf", send: c.send, read: c.read}
}

// checkMixedRoom has every member send a message and every other member
// receive it, each in its own encoding, data equal and one gateway id.
func checkMixedRoom(t *testing.T, room string, members []mixMember) {
	t.Helper()
	var want any
	mustUnmarshal(t, pbMixData, &want)
	for _, s := range members {
		s.send(`{"type":"message","room":"` + room + `","data":` + pbMixData + `,"id":"m"}`)
		if m := s.read(); m["type"] != "ack" || m["id"] != "m" {
			t.Fatalf("%s: %v, want ack", s.name, m)
		}
		var ids []string
		for _, r := range members {
			if r.name == s.name {
				continue
			}
			m := r.read()
			if m["type"] != "message" {
				t.Fatalf("%s: %v, want message", r.name, m)
			}
			from, _, _ := strings.Cut(s.name, "/")
			checkDelivery(t, m, "room", room, from)
			if !reflect.DeepEqual(m["data"], want) {
				t.Fatalf("%s -> %s: data %#v, want %#v", s.name, r.name, m["data"], want)
			}
			ids = append(ids, m["id"].(string))
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Fatalf("one message, different ids across encodings: %v", ids)
			}
		}
	}
}

// A gw.protobuf client in a room with gw.json and gw.msgpack clients gets
// every message in protobuf and they get its messages, data equal under the
// proto3 JSON mapping; replies, errors and filters work in protobuf.
func TestIntegrationProtobufMixedRoom(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	js := g.user("js", wire.SubprotocolJSON)
	mp := g.user("mp", wire.SubprotocolMsgpack)
	pb := g.pbUser(auth.Claims{Sub: "pb", Pub: []string{"prices.*"}})
	pb2 := g.pbUser(auth.Claims{Sub: "pb2"})
	js.join("mix")
	mp.join("mix")
	pb.join("mix")
	pb2.join("mix")
	members := []mixMember{jsonMember(js), jsonMember(mp), pbMember(pb), pbMember(pb2)}
	checkMixedRoom(t, "mix", members)

	// Replies in protobuf: ping, presence, send ack, errors.
	pb.send(`{"type":"ping","id":"p"}`)
	if m := pb.expect("pong"); m["id"] != "p" || m["ts"].(float64) <= 0 {
		t.Fatalf("pong %v", m)
	}
	pb.send(`{"type":"presence","room":"mix","id":"q"}`)
	if m := pb.expect("presence"); len(m["users"].([]any)) != 4 {
		t.Fatalf("presence %v", m)
	}
	pb.send(`{"type":"send","to":"js","data":[1,"two"],"id":"s"}`)
	if m := pb.expect("ack"); m["delivered"] != float64(1) || m["remote"] != false {
		t.Fatalf("send ack %v", m)
	}
	if m := js.expectDelivery("to", "js", "pb"); !reflect.DeepEqual(m["data"], []any{float64(1), "two"}) {
		t.Fatalf("send data %v", m)
	}
	for _, raw := range [][]byte{{0x80}, {0x0a, 0x05, 'p'}, {0x08, 0x01}, {0x0a, 0x04, 'n', 'o', 'p', 'e'}, {}} {
		pb.sendRaw(websocket.BinaryMessage, raw)
		if m := pb.expect("error"); m["code"] != wire.CodeBadRequest {
			t.Fatalf("% x: %v", raw, m)
		}
	}
	pb.sendRaw(websocket.TextMessage, []byte(`{"type":"ping"}`))
	if m := pb.expect("error"); m["code"] != wire.CodeBadRequest {
		t.Fatalf("text frame on gw.protobuf: %v", m)
	}
	pb.send(`{"type":"message","room":"mix"}`)
	if m := pb.expect("error"); m["code"] != wire.CodeBadRequest || m["message"] != "missing data" {
		t.Fatalf("missing data: %v", m)
	}

	// A filter sent in protobuf selects receivers by their tags claim.
	eu := g.userWith(auth.Claims{Sub: "eu", Tags: map[string]string{"region": "eu"}}, dialOpts{protocols: []string{wire.SubprotocolMsgpack}})
	us := g.userWith(auth.Claims{Sub: "us", Tags: map[string]string{"region": "us"}}, dialOpts{})
	eu.subscribe("prices.btc")
	us.subscribe("prices.btc")
	pb.send(`{"type":"publish","channel":"prices.btc","data":{"p":97000},"filter":{"region":"eu"},"id":"x"}`)
	pb.expect("ack")
	if m := eu.expectDelivery("channel", "prices.btc", "pb"); !reflect.DeepEqual(m["data"], map[string]any{"p": float64(97000)}) {
		t.Fatalf("filtered publish %v", m)
	}
	pb.send(`{"type":"publish","channel":"prices.btc","data":"both","filter":{"tag":"region","in":["us","eu"]}}`)
	eu.expectDelivery("channel", "prices.btc", "pb")
	us.expectDelivery("channel", "prices.btc", "pb")
	us.none(quiet)
	pb.send(`{"type":"publish","channel":"prices.btc","data":1,"filter":{"region":7}}`)
	if m := pb.expect("error"); m["code"] != wire.CodeBadRequest {
		t.Fatalf("bad filter: %v", m)
	}
	pb.alive()
}

// Across two instances: gw.protobuf on one, gw.json, gw.msgpack and
// gw.protobuf on the other; the backplane carries JSON between them.
func TestIntegrationProtobufTwoInstances(t *testing.T) {
	ga, gb := twoInstances(t, Options{RateMsgs: -1})
	pbA := ga.pbUser(auth.Claims{Sub: "pba", Pub: []string{"prices.*"}})
	jsB := gb.user("jsb", wire.SubprotocolJSON)
	mpB := gb.user("mpb", wire.SubprotocolMsgpack)
	pbB := gb.pbUser(auth.Claims{Sub: "pbb"})
	pbA.join("mix2")
	jsB.join("mix2")
	mpB.join("mix2")
	pbB.join("mix2")
	members := []mixMember{pbMember(pbA), jsonMember(jsB), jsonMember(mpB), pbMember(pbB)}
	checkMixedRoom(t, "mix2", members)

	// A filter written in protobuf crosses the backplane as JSON.
	eu := gb.userWith(auth.Claims{Sub: "eub", Tags: map[string]string{"region": "eu"}}, dialOpts{protocols: []string{wire.SubprotocolMsgpack}})
	us := gb.userWith(auth.Claims{Sub: "usb", Tags: map[string]string{"region": "us"}}, dialOpts{})
	eu.subscribe("prices.eth")
	us.subscribe("prices.eth")
	pbA.send(`{"type":"publish","channel":"prices.eth","data":{"p":3500.5},"filter":{"tag":"region","in":["eu"]},"id":"x"}`)
	pbA.expect("ack")
	if m := eu.expectDelivery("channel", "prices.eth", "pba"); !reflect.DeepEqual(m["data"], map[string]any{"p": 3500.5}) {
		t.Fatalf("filtered publish across instances: %v", m)
	}
	us.none(quiet)
}
