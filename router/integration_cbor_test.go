package router

// gw.cbor clients beside gw.json and gw.msgpack ones (PROTOCOL.md sections
// 2 and 13): every member gets every message in its own encoding, `data`
// equal under the mapping in docs/protocol.md, on one instance and across
// two. The CBOR side is github.com/fxamacker/cbor/v2, so the gateway's CBOR
// is checked by an independent implementation.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// cborDM decodes gateway frames into the shapes encoding/json produces.
var cborDM = func() cbor.DecMode {
	dm, err := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any(nil)), BigIntDec: cbor.BigIntDecodePointer}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// cborClient is a gorilla client speaking gw.cbor, reading in the test's
// goroutine with a deadline.
type cborClient struct {
	t    testing.TB
	conn *websocket.Conn
	user string
	last []byte // the raw payload of the last message read
}

// cborUser connects as sub offering gw.cbor and consumes auth:ok.
func (g *gateway) cborUser(sub string) *cborClient {
	g.t.Helper()
	return g.cborUserWith(auth.Claims{Sub: sub})
}

// cborUserWith connects with the claims' token offering gw.cbor and
// consumes auth:ok.
func (g *gateway) cborUserWith(cl auth.Claims) *cborClient {
	g.t.Helper()
	sub := cl.Sub
	d := websocket.Dialer{Subprotocols: []string{wire.SubprotocolCBOR}, HandshakeTimeout: waitFor}
	conn, resp, err := d.Dial(g.url()+"?token="+token(g.t, cl), http.Header{})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		g.t.Fatalf("dial: %v (status %d)", err, status)
	}
	g.t.Cleanup(func() { _ = conn.Close() })
	if p := conn.Subprotocol(); p != wire.SubprotocolCBOR {
		g.t.Fatalf("subprotocol %q, want gw.cbor", p)
	}
	c := &cborClient{t: g.t, conn: conn, user: sub}
	if m := c.expect("auth:ok"); m["user"] != sub {
		g.t.Fatalf("auth:ok %v", m)
	}
	return c
}

// send encodes v with fxamacker (struct fields in order; cbor.RawMessage
// values go as they are) and writes it in a binary frame.
func (c *cborClient) send(v any) {
	c.t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		c.t.Fatalf("cbor marshal: %v", err)
	}
	c.sendRaw(b)
}

func (c *cborClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next message, which must be one CBOR map in a binary
// frame, in the shapes encoding/json gives (see cborToJSONValue).
func (c *cborClient) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(waitFor))
	op, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("cbor client %s: read: %v", c.user, err)
	}
	if op != websocket.BinaryMessage {
		c.t.Fatalf("cbor client %s: frame type %d (%q)", c.user, op, b)
	}
	m, ok := cborToJSONValue(c.t, b).(map[string]any)
	if !ok {
		c.t.Fatalf("cbor client %s: not a map: % x", c.user, b)
	}
	c.last = b
	return m
}

func (c *cborClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("cbor client %s: got %v, want type %q", c.user, m, typ)
	}
	return m
}

// cborMessage is a client message in a fixed field order.
type cborMessage struct {
	Type string          `cbor:"type"`
	Room string          `cbor:"room,omitempty"`
	ID   string          `cbor:"id,omitempty"`
	Data cbor.RawMessage `cbor:"data,omitempty"`
}

// cborMessageRaw builds a message map around data bytes that may be
// malformed (fxamacker refuses to write those).
func cborMessageRaw(t testing.TB, room, id string, data []byte) []byte {
	t.Helper()
	b := []byte{0xa4}
	for _, s := range []string{"type", "message", "room", room, "id", id, "data"} {
		e, err := cbor.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, e...)
	}
	return append(b, data...)
}

// cborData returns the raw `data` item of a delivery frame.
func cborData(t testing.TB, frame []byte) []byte {
	t.Helper()
	var m struct {
		Data cbor.RawMessage `cbor:"data"`
	}
	if err := cbor.Unmarshal(frame, &m); err != nil {
		t.Fatalf("% x: %v", frame, err)
	}
	return m.Data
}

// cborToJSONValue is fxamacker's reading of CBOR data under the gateway's
// mapping: numbers as float64, byte strings as base64 (encoding/json's
// form of []byte).
func cborToJSONValue(t testing.TB, raw []byte) any {
	t.Helper()
	var v any
	if err := cborDM.Unmarshal(raw, &v); err != nil {
		t.Fatalf("% x: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v: %v", v, err)
	}
	var out any
	mustUnmarshal(t, string(b), &out)
	return out
}

func cborHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIntegrationCBORMixedRoom(t *testing.T) {
	t.Run("one instance", func(t *testing.T) {
		g := startGateway(t, engine.Options{}, Options{})
		testCBORMixedRoom(t, g, g)
	})
	t.Run("two instances", func(t *testing.T) {
		a, b := twoInstances(t, Options{})
		testCBORMixedRoom(t, a, b)
	})
}

// testCBORMixedRoom puts JSON, msgpack and CBOR members in one room, split
// over a and b (which may be the same gateway).
func testCBORMixedRoom(t *testing.T, a, b *gateway) {
	js := a.user("js", wire.SubprotocolJSON)
	mp := b.user("mp", wire.SubprotocolMsgpack)
	cb := a.cborUser("cb")
	cbA2 := a.cborUser("cb2") // a second CBOR member on cb's instance
	cbB := b.cborUser("cb3")  // and one on the other
	for _, c := range []*tclient{js, mp} {
		c.join("mix")
	}
	for _, c := range []*cborClient{cb, cbA2, cbB} {
		c.send(cborMessage{Type: "join", Room: "mix", ID: "j"})
		if m := c.expect("joined"); m["room"] != "mix" || m["id"] != "j" {
			t.Fatalf("joined %v", m)
		}
	}
	cborMembers := []*cborClient{cb, cbA2, cbB}

	// expectCBOR reads the delivery on every CBOR member but skip and checks
	// that data reads as want; the members on one instance get the same
	// bytes (one encoding per codec, shared).
	expectCBOR := func(skip *cborClient, from string, want any) [][]byte {
		t.Helper()
		var frames [][]byte
		for _, c := range cborMembers {
			if c == skip {
				continue
			}
			m := c.expect("message")
			checkDelivery(t, m, "room", "mix", from)
			if got := cborToJSONValue(t, cborData(t, c.last)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s -> cbor %s: data %#v, want %#v", from, c.user, got, want)
			}
			frames = append(frames, c.last)
		}
		return frames
	}

	// From JSON: the CBOR members get the same value; integers stay exact.
	data := `{"s":"héllo","i":-7,"u":18446744073709551615,"f":0.25,"b":[true,false,null],"o":{"k":"v"}}`
	var want any
	mustUnmarshal(t, data, &want)
	js.send(`{"type":"message","room":"mix","data":` + data + `}`)
	if m := mp.expectDelivery("room", "mix", "js"); !reflect.DeepEqual(m["data"], want) {
		t.Fatalf("json -> msgpack: %v", m["data"])
	}
	frames := expectCBOR(nil, "js", want)
	if a == b && !bytes.Equal(frames[0], frames[1]) {
		t.Fatalf("one message, different CBOR frames:\n% x\n% x", frames[0], frames[1])
	}
	if raw := cborData(t, frames[0]); !bytes.Contains(raw, cborHex(t, "61 75 1b ffffffffffffffff")) {
		t.Fatalf("u is not the exact CBOR integer: % x", raw)
	}

	// From msgpack, with a bin value (hand-built: tclient.send speaks JSON):
	// {"type":"message","room":"mix","data":{"bin":h'0102ff',"n":-1}}.
	mp.sendRaw(websocket.BinaryMessage, cborHex(t,
		"83 a4 74797065 a7 6d657373616765 a4 726f6f6d a3 6d6978 a4 64617461 82 a3 62696e c4 03 0102ff a1 6e ff"))
	wantBin := map[string]any{"bin": "AQL/", "n": float64(-1)}
	if m := js.expectDelivery("room", "mix", "mp"); !reflect.DeepEqual(m["data"], wantBin) {
		t.Fatalf("msgpack -> json: %v", m["data"])
	}
	frames = expectCBOR(nil, "mp", wantBin)
	// cbB shares mp's instance; across instances the backplane carries
	// JSON, where bin is already its base64 string (docs/protocol.md).
	if raw := cborData(t, frames[2]); !bytes.Equal(raw, cborHex(t, "a2 63 62696e 43 0102ff 61 6e 20")) {
		t.Fatalf("msgpack bin is not a CBOR byte string: % x", raw)
	}

	// From CBOR: the other CBOR members get the item as sent; JSON and
	// msgpack members get it under the mapping: byte strings as base64,
	// half floats, tag 1 unwrapped, undefined as null, indefinite lengths.
	sent := cborHex(t, regexpComments(`bf                      # indefinite map
		65 6279746573 43 010203                         # "bytes": h'010203'
		64 68616c66 f9 3e00                             # "half": 1.5 (half float)
		62 6e67 3b 8000000000000000                     # "ng": -9223372036854775809
		62 7473 c1 1a 514b67b0                          # "ts": 1(1363896240)
		63 756e64 f7                                    # "und": undefined
		64 6c697374 9f 01 7f 62 6869 61 21 ff ff        # "list": [_ 1, (_ "hi" "!")]
		ff`))
	wantFromCBOR := map[string]any{"bytes": "AQID", "half": 1.5, "ng": float64(-9223372036854775809), "ts": float64(1363896240),
		"und": nil, "list": []any{float64(1), "hi!"}}
	cb.send(cborMessage{Type: "message", Room: "mix", ID: "c1", Data: sent})
	if ack := cb.expect("ack"); ack["id"] != "c1" {
		t.Fatalf("ack %v", ack)
	}
	if m := js.expectDelivery("room", "mix", "cb"); !reflect.DeepEqual(m["data"], wantFromCBOR) {
		t.Fatalf("cbor -> json: %#v", m["data"])
	}
	if m := mp.expectDelivery("room", "mix", "cb"); !reflect.DeepEqual(m["data"], wantFromCBOR) {
		t.Fatalf("cbor -> msgpack: %#v", m["data"])
	}
	// cbA2 shares cb's instance and gets the item byte for byte; so does cbB
	// on one instance. Across instances the backplane carries JSON, so cbB
	// gets that value back in CBOR.
	cbA2.expect("message")
	if raw := cborData(t, cbA2.last); !bytes.Equal(raw, sent) {
		t.Fatalf("cbor -> cbor on one instance: % x, sent % x", raw, sent)
	}
	cbB.expect("message")
	if raw := cborData(t, cbB.last); a == b && !bytes.Equal(raw, sent) {
		t.Fatalf("cbor -> cbor on one instance: % x, sent % x", raw, sent)
	} else if got := cborToJSONValue(t, raw); a != b && !reflect.DeepEqual(got, wantFromCBOR) {
		t.Fatalf("cbor -> cbor across instances: %#v", got)
	}

	// Refused at the door: no form for every encoding. Nobody receives it;
	// the next message is the one everybody gets.
	for _, bad := range []string{
		"c2 41 01",        // bignum
		"a1 01 02",        // integer map key
		"f9 7e00",         // NaN
		"d8 20 63 612f62", // tag 32 (URI)
		"62 c328",         // invalid UTF-8
		"f0",              // simple(16)
		"81 81 81 ff",     // malformed
	} {
		cb.sendRaw(cborMessageRaw(t, "mix", "bad", cborHex(t, bad)))
		if e := cb.expect("error"); e["code"] != wire.CodeBadRequest || e["id"] != "bad" {
			t.Fatalf("%s: %v", bad, e)
		}
	}
	cb.send(cborMessage{Type: "message", Room: "mix", Data: cborHex(t, "63 6f6b21")}) // "ok!"
	if m := js.expectDelivery("room", "mix", "cb"); m["data"] != "ok!" {
		t.Fatalf("after refusals: %v", m)
	}
	if m := mp.expectDelivery("room", "mix", "cb"); m["data"] != "ok!" {
		t.Fatalf("after refusals: %v", m)
	}
	for _, c := range []*cborClient{cbA2, cbB} {
		if m := c.expect("message"); m["data"] != "ok!" {
			t.Fatalf("after refusals: %v", m)
		}
	}

	// A text frame on a gw.cbor connection, and a malformed message.
	if err := cb.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	cb.expect("error")
	cb.sendRaw([]byte{0xa1, 0x64, 't', 'y'})
	if e := cb.expect("error"); e["code"] != wire.CodeBadRequest {
		t.Fatalf("%v", e)
	}
	cb.send(cborMessage{Type: "ping", ID: "p"})
	if m := cb.expect("pong"); m["id"] != "p" {
		t.Fatalf("pong %v", m)
	}
	js.none(quiet)
	mp.none(quiet)
}

// regexpComments strips "# ..." comments from annotated hex.
func regexpComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		code, _, _ := strings.Cut(line, "#")
		b.WriteString(code)
	}
	return b.String()
}

// A gw.cbor publisher's filter (a CBOR map, here indefinite-length) is read
// by the gateway and, across instances, handed on as JSON: subscribers of
// every encoding are matched against their tags.
func TestIntegrationCBORPublishFilter(t *testing.T) {
	a, b := twoInstances(t, Options{})
	pub := a.cborUserWith(auth.Claims{Sub: "pub", Pub: []string{"prices.*"}})
	euJSON := a.userWith(auth.Claims{Sub: "eu1", Tags: map[string]string{"region": "eu"}}, dialOpts{})
	usJSON := a.userWith(auth.Claims{Sub: "us1", Tags: map[string]string{"region": "us"}}, dialOpts{})
	euMP := b.userWith(auth.Claims{Sub: "eu2", Tags: map[string]string{"region": "eu"}}, dialOpts{protocols: []string{wire.SubprotocolMsgpack}})
	euCBOR := b.cborUserWith(auth.Claims{Sub: "eu3", Tags: map[string]string{"region": "eu"}})
	usCBOR := b.cborUserWith(auth.Claims{Sub: "us3", Tags: map[string]string{"region": "us"}})
	for _, c := range []*tclient{euJSON, usJSON, euMP} {
		c.subscribe("prices.btc")
	}
	for _, c := range []*cborClient{euCBOR, usCBOR} {
		c.send(map[string]string{"type": "subscribe", "channel": "prices.btc"})
		c.expect("subscribed")
	}
	type publish struct {
		Type    string          `cbor:"type"`
		Channel string          `cbor:"channel"`
		ID      string          `cbor:"id"`
		Data    cbor.RawMessage `cbor:"data"`
		Filter  cbor.RawMessage `cbor:"filter"`
	}
	// filter {_ "tag": "region", "in": [_ "eu"]}
	filter := cborHex(t, "bf 63 746167 66 726567696f6e 62 696e 9f 62 6575 ff ff")
	pub.send(publish{Type: "publish", Channel: "prices.btc", ID: "p1", Data: cborHex(t, "a1 61 70 19 2710"), Filter: filter})
	if ack := pub.expect("ack"); ack["id"] != "p1" {
		t.Fatalf("ack %v", ack)
	}
	want := map[string]any{"p": float64(10000)}
	for _, c := range []*tclient{euJSON, euMP} {
		if m := c.expectDelivery("channel", "prices.btc", "pub"); !reflect.DeepEqual(m["data"], want) {
			t.Fatalf("%s: %v", c, m)
		}
	}
	if m := euCBOR.expect("message"); m["channel"] != "prices.btc" || !reflect.DeepEqual(m["data"], want) {
		t.Fatalf("cbor eu: %v", m)
	}
	// A bad filter is refused; the us receivers got nothing: the next
	// message they see is an unfiltered one.
	pub.send(publish{Type: "publish", Channel: "prices.btc", ID: "p2", Data: cborHex(t, "01"), Filter: cborHex(t, "a1 61 61 01")})
	if e := pub.expect("error"); e["code"] != wire.CodeBadRequest || e["id"] != "p2" {
		t.Fatalf("bad filter: %v", e)
	}
	pub.send(publish{Type: "publish", Channel: "prices.btc", ID: "p3", Data: cborHex(t, "63 616c6c"), Filter: cborHex(t, "f6")})
	pub.expect("ack")
	if m := usJSON.expectDelivery("channel", "prices.btc", "pub"); m["data"] != "all" {
		t.Fatalf("us json: %v", m)
	}
	if m := usCBOR.expect("message"); m["data"] != "all" {
		t.Fatalf("us cbor: %v", m)
	}
}
