package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// gwJSONClientMessages is one gw.json message of every client type, with
// every field its type uses (PROTOCOL.md section 3).
var gwJSONClientMessages = []string{
	`{"type":"auth","token":"eyJhbGciOi.x.y","id":"a1"}`,
	`{"type":"ping","id":"p1"}`,
	`{"type":"join","room":"lobby","id":"j1"}`,
	`{"type":"leave","room":"lobby"}`,
	`{"type":"message","room":"lobby","data":{"text":"hi","n":[1,2.5,-3e-9,true,null],"o":{}},"priority":"high","id":"m1"}`,
	`{"type":"message","room":"lobby","data":null}`,
	`{"type":"send","to":"bob","data":"psst","id":"s1"}`,
	`{"type":"subscribe","channel":"prices.btc"}`,
	`{"type":"unsubscribe","channel":"prices.btc"}`,
	`{"type":"publish","channel":"prices.btc","data":{"p":97000},"filter":{"region":"eu"},"priority":"low","id":"x"}`,
	`{"type":"publish","channel":"c","data":[],"filter":{"tag":"region","in":["eu","us"]}}`,
	`{"type":"presence","room":"lobby","id":"q"}`,
	`{"type":"resume","room":"lobby","since":41}`,
	`{"type":"resume","room":"lobby","since":0}`,
	`{"type":"resume","room":"lobby","since":18446744073709551615}`,
}

// TestDecodeProtobuf decodes every client message, built by the library
// from its gw.json text, and expects the Envelope DecodeJSON makes of that
// text, data and filter equal as JSON values.
func TestDecodeProtobuf(t *testing.T) {
	s := loadPBSchema(t)
	for _, js := range gwJSONClientMessages {
		pb := s.clientFromJSON(t, js)
		var want, got Envelope
		if err := DecodeJSON([]byte(js), &want); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if err := DecodeProtobuf(pb, &got); err != nil {
			t.Fatalf("%s: DecodeProtobuf(% x): %v", js, pb, err)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", js, err)
		}
		for _, f := range []struct {
			name      string
			got, want []byte
		}{{"data", got.Data, want.Data}, {"filter", got.Filter, want.Filter}} {
			if (f.got == nil) != (f.want == nil) {
				t.Fatalf("%s: %s present %v, want %v", js, f.name, f.got != nil, f.want != nil)
			}
			if f.got == nil {
				continue
			}
			gj, err := ProtobufToJSON(nil, f.got)
			if err != nil {
				t.Fatalf("%s: %s: %v", js, f.name, err)
			}
			if !jsonEqual(t, gj, f.want) {
				t.Fatalf("%s: %s %s, want %s", js, f.name, gj, f.want)
			}
		}
		got.Data, got.Filter, want.Data, want.Filter = nil, nil, nil, nil
		assertEnvelopeEqual(t, &got, &want)
	}
}

func TestDecodeProtobufErrors(t *testing.T) {
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	msg := str(pbCType, "message")
	room := str(pbCRoom, "r")
	data := func(v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, pbCData, protowire.BytesType), v)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMissingType},
		{"empty type", str(pbCType, ""), ErrMissingType},
		{"unknown type", str(pbCType, "nope"), errUnknownType},
		{"truncated tag", []byte{0x80}, errPBMalformed},
		{"truncated string", []byte{0x0a, 0x05, 'p', 'i'}, errPBMalformed},
		{"field 0", []byte{0x00, 0x00}, errPBMalformed},
		{"end group alone", []byte{0x7c}, errPBMalformed},
		{"known field as group", []byte{0x0b, 0x0c}, errPBWireType},
		{"type as varint", []byte{0x08, 0x01}, errPBWireType},
		{"since as string", join(msg, str(pbCSince, "1")), errPBWireType},
		{"bad UTF-8 in room", join(msg, str(pbCRoom, "\xff")), errPBUTF8},
		{"bad priority", join(msg, str(pbCPriority, "urgent")), errBadPriority},
		{"empty data Value", join(msg, room, data(nil)), errPBValueEmpty},
		{"two kinds", join(msg, room, data([]byte{0x08, 0x00, 0x20, 0x01})), errPBValueKinds},
		{"bad UTF-8 in data", join(msg, room, data([]byte{0x1a, 0x01, 0xff})), errPBUTF8},
		{"duplicate data", join(msg, room, data(pbNullValue), data(pbNullValue)), errPBDuplicate},
		{"list with empty Value", join(msg, room, data([]byte{0x32, 0x02, 0x0a, 0x00})), errPBValueEmpty},
		{"struct entry without value", join(msg, room, data([]byte{0x2a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'k'})), errPBValueEmpty},
		{"data truncated inside", join(msg, room, data([]byte{0x2a, 0x05, 0x0a})), errPBMalformed},
	}
	for _, tt := range tests {
		var e Envelope
		err := DecodeProtobuf(tt.in, &e)
		if err != tt.want {
			t.Errorf("%s (% x): got %v, want %v", tt.name, tt.in, err, tt.want)
		}
	}
	deep := pbNullValue
	for range maxDepth + 1 {
		deep = protowire.AppendBytes([]byte{0x32}, protowire.AppendBytes([]byte{0x0a}, deep))
	}
	var e Envelope
	if err := DecodeProtobuf(join(msg, room, data(deep)), &e); err != errJSONDepth {
		t.Errorf("deep data: %v", err)
	}
	// Unknown fields of every wire type are skipped; the last scalar wins.
	in := join(msg, str(pbCRoom, "a"), []byte{0xf8, 0x01, 0x05}, []byte{0x9b, 0x01, 0x08, 0x01, 0x9c, 0x01},
		[]byte{0xa5, 0x01, 1, 2, 3, 4}, []byte{0xa9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, str(99, "x"), room, data(pbNullValue))
	if err := DecodeProtobuf(in, &e); err != nil || string(e.Room) != "r" || !bytes.Equal(e.Data, pbNullValue) {
		t.Errorf("unknown fields: %v %q % x", err, e.Room, e.Data)
	}
}

// TestProtobufEveryReply writes every reply and event in gw.protobuf, reads
// it with the library through the published schema, and expects the gw.json
// object of the same call (protojson's 64-bit strings made numbers).
func TestProtobufEveryReply(t *testing.T) {
	s := loadPBSchema(t)
	id := []byte("c-1")
	rpcData := map[Codec][]byte{} // encoded before, so that the alloc check sees only the reply
	for _, c := range []Codec{CodecJSON, CodecProtobuf} {
		rpcData[c] = pbTestData(t, c, `{"order":{"id":7,"items":["a"]}}`)
	}
	replies := []struct {
		name string
		enc  func(c Codec, dst []byte) []byte
	}{
		{"auth:ok", func(c Codec, d []byte) []byte { return c.AppendAuthOK(d, "alice", "conn-1", "gw-a", id) }},
		{"auth:fail", func(c Codec, d []byte) []byte { return c.AppendAuthFail(d, "token expired") }},
		{"error", func(c Codec, d []byte) []byte { return c.AppendError(d, CodeForbidden, "no \"room\"\n é", id) }},
		{"protocol error", func(c Codec, d []byte) []byte { return c.AppendProtocolError(d, errPBUTF8, nil) }},
		{"pong", func(c Codec, d []byte) []byte { return c.AppendPong(d, 1733040000000, id) }},
		{"joined", func(c Codec, d []byte) []byte { return c.AppendSimple(d, ReplyJoined, "room", []byte("lobby"), id) }},
		{"server subscribed", func(c Codec, d []byte) []byte {
			return c.AppendServerJoined(d, ReplySubscribed, "channel", []byte("p.b"))
		}},
		{"left", func(c Codec, d []byte) []byte { return c.AppendSimple(d, ReplyLeft, "room", []byte("lobby"), nil) }},
		{"subscribed", func(c Codec, d []byte) []byte {
			return c.AppendSimple(d, ReplySubscribed, "channel", []byte("p.b"), id)
		}},
		{"unsubscribed", func(c Codec, d []byte) []byte {
			return c.AppendSimple(d, ReplyUnsubscribed, "channel", []byte("p.b"), nil)
		}},
		{"joined by server", func(c Codec, d []byte) []byte {
			return c.AppendServerJoined(d, ReplyJoined, "room", []byte("lobby"))
		}},
		{"left by server", func(c Codec, d []byte) []byte {
			return c.AppendLeftReason(d, ReplyLeft, "room", []byte("lobby"), ReasonServer)
		}},
		{"ack", func(c Codec, d []byte) []byte { return c.AppendAck(d, id, nil, 0) }},
		{"ack mid seq", func(c Codec, d []byte) []byte { return c.AppendAck(d, id, []byte("gw-a-1-2"), 1<<40) }},
		{"send ack", func(c Codec, d []byte) []byte { return c.AppendSendAck(d, id, []byte("a1b2c3d4-0-7"), 3, true) }},
		{"send ack offline", func(c Codec, d []byte) []byte { return c.AppendSendAck(d, nil, nil, 0, false) }},
		{"user:joined", func(c Codec, d []byte) []byte { return c.AppendUserEvent(d, EventUserJoined, []byte("r"), "bob") }},
		{"user:left", func(c Codec, d []byte) []byte { return c.AppendUserEvent(d, EventUserLeft, []byte("r"), "bob") }},
		{"presence", func(c Codec, d []byte) []byte { return c.AppendPresence(d, []byte("r"), []string{"a", "b"}, id) }},
		{"presence truncated", func(c Codec, d []byte) []byte {
			return c.AppendPresencePage(d, []byte("r"), []string{"a"}, true, id)
		}},
		{"resumed", func(c Codec, d []byte) []byte { return c.AppendResumed(d, []byte("r"), 42, false, nil) }},
		{"resumed at 0", func(c Codec, d []byte) []byte { return c.AppendResumed(d, []byte("r"), 0, true, id) }},
		{"gap", func(c Codec, d []byte) []byte { return c.AppendGap(d, 17) }},
		{"gap zero", func(c Codec, d []byte) []byte { return c.AppendGap(d, 0) }},
		{"gap reason", func(c Codec, d []byte) []byte { return c.AppendGapReason(d, GapBackplane) }},
		{"gap at", func(c Codec, d []byte) []byte { return c.AppendGapAt(d, 40, TargetChannel, []byte("c"), GapOverload) }},
		{"reconnect", func(c Codec, d []byte) []byte { return c.AppendReconnect(d, 2500) }},
		{"rpc:result", func(c Codec, d []byte) []byte {
			return c.AppendRPCResult(d, id, rpcData[c])
		}},
		{"rpc:result null", func(c Codec, d []byte) []byte { return c.AppendRPCResult(d, id, nil) }},
		{"service_error", func(c Codec, d []byte) []byte {
			return c.AppendServiceError(d, "not_found", "no such order \"7\"", id)
		}},
		{"auth:ok with exp", func(c Codec, d []byte) []byte { return c.AppendAuthOKExp(d, "alice", "conn-1", "gw-a", 1733040000, id) }},
		{"refreshed", func(c Codec, d []byte) []byte { return c.AppendRefreshed(d, 1733043600, id) }},
		{"refreshed no exp", func(c Codec, d []byte) []byte { return c.AppendRefreshed(d, 0, nil) }},
		{"token_expired", func(c Codec, d []byte) []byte { return c.AppendTokenExpired(d, 30000) }},
		{"token_expired close now", func(c Codec, d []byte) []byte { return c.AppendTokenExpired(d, 0) }},
		{"left revoked", func(c Codec, d []byte) []byte {
			return c.AppendLeftTarget(d, TargetChannel, []byte("p.b"), LeftRevoked)
		}},
		{"delivery", func(c Codec, d []byte) []byte {
			return c.AppendDelivery(d, &Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"),
				Data: pbTestData(t, c, `{"text":"hi","n":[1,-2.5,null,true]}`), ID: []byte("gw-a-1"), Seq: 7, HasSeq: true, TS: 1733040000000})
		}},
		{"delivery to user, null data", func(c Codec, d []byte) []byte {
			return c.AppendDelivery(d, &Delivery{Target: TargetUser, Name: []byte("bob"), TS: 5})
		}},
		{"delivery seq 0, negative ts", func(c Codec, d []byte) []byte {
			return c.AppendDelivery(d, &Delivery{Target: TargetChannel, Name: []byte("c"), Data: pbTestData(t, c, `"x"`), HasSeq: true, TS: -1})
		}},
	}
	for _, r := range replies {
		want := decodeReply(t, CodecJSON, r.enc(CodecJSON, nil))
		// proto3 cannot tell an absent list from an empty one, nor a zero
		// implicit scalar from none.
		if u, ok := want["users"].([]any); ok && len(u) == 0 {
			delete(want, "users")
		}
		out := r.enc(CodecProtobuf, []byte("prefix"))
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatalf("%s: dst not appended to", r.name)
		}
		got := s.serverToJSON(t, out[len("prefix"):])
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: library reads %v, gw.json says %v", r.name, got, want)
		}
		buf := make([]byte, 0, 256)
		if allocs := testing.AllocsPerRun(20, func() { buf = r.enc(CodecProtobuf, buf[:0]) }); allocs != 0 && !strings.HasPrefix(r.name, "delivery") {
			t.Errorf("%s: %.1f allocs", r.name, allocs)
		}
	}
}

// pbTestData returns the JSON value js in codec c, for a Delivery.
func pbTestData(t testing.TB, c Codec, js string) []byte {
	t.Helper()
	if c == CodecJSON {
		return []byte(js)
	}
	out, err := Transcode(nil, []byte(js), CodecJSON, c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestProtobufFilter(t *testing.T) {
	s := loadPBSchema(t)
	for _, f := range []string{`{}`, `{"region":"eu","tier":"gold"}`, `{"tag":"region","in":["eu","us"]}`, `{"tag":"region","in":[]}`,
		`{"in":["x"]}`, `{"a":1}`, `{"a":["x",1]}`, `{"tag":"r","in":["x"],"more":"y"}`} {
		pb := s.clientFromJSON(t, `{"type":"publish","channel":"c","data":1,"filter":`+f+`}`)
		var e Envelope
		if err := DecodeProtobuf(pb, &e); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want, wantErr := ParseFilter([]byte(f), CodecJSON)
		got, err := ParseFilter(e.Filter, CodecProtobuf)
		if err != wantErr || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v %v, want %+v %v", f, got, err, want, wantErr)
		}
		js, err := Transcode(nil, e.Filter, CodecProtobuf, CodecJSON)
		if err != nil || !jsonEqual(t, js, []byte(f)) {
			t.Errorf("%s: transcoded to %s, %v", f, js, err)
		}
	}
	if f, err := ParseFilter(pbNullValue, CodecProtobuf); err != nil || !f.IsZero() {
		t.Errorf("null filter: %v %v", f, err)
	}
	many := `{` + strings.Repeat(`"k":"v",`, MaxFilterTags) + `"k":"v"}`
	mp, _ := JSONToProtobuf(nil, []byte(many))
	if _, err := ParseFilter(mp, CodecProtobuf); err != errFilterTooBig {
		t.Errorf("too many tags: %v", err)
	}
}

func TestProtobufTranscode(t *testing.T) {
	long := strings.Repeat("x", 200)
	huge := strings.Repeat("y", 70000)
	for _, js := range []string{
		`null`, `true`, `false`, `0`, `-0`, `1.5`, `-3e-9`, `1e300`, `1e-400`, `9007199254740993`, `18446744073709551616`,
		`""`, `"hi"`, `"\u00e9\ud83d\ude00\n\"\\\/"`, `"\ud800"`, `[]`, `{}`, `[1,[2,[3,{}]]]`,
		`{"a":1,"a":2}`, `{"":{"k":[null]}}`, ` { "sp" : [ 1 , 2 ] } `,
		`"` + long + `"`, `{"` + long + `":["` + long + `"]}`, `["` + huge + `",{"k":"` + huge + `"}]`,
	} {
		pb, err := JSONToProtobuf([]byte("pre"), []byte(js))
		if err != nil {
			t.Fatalf("%.40s: %v", js, err)
		}
		v, err := libValue(pb[3:])
		if err != nil {
			t.Fatalf("%.40s: library rejects our Value: %v", js, err)
		}
		lib, err := protojson.Marshal(v)
		if err != nil {
			t.Fatalf("%.40s: protojson: %v", js, err)
		}
		if !jsonEqual(t, lib, []byte(js)) {
			t.Fatalf("%.40s: library reads %.80s", js, lib)
		}
		back, err := ProtobufToJSON([]byte("pre"), pb[3:])
		if err != nil || !jsonEqual(t, back[3:], []byte(js)) {
			t.Fatalf("%.40s: back %.80s, %v", js, back, err)
		}
		// gw.msgpack has no direct path: through JSON.
		mp, err := Transcode(nil, pb[3:], CodecProtobuf, CodecMsgpack)
		if err != nil {
			t.Fatalf("%.40s: to msgpack: %v", js, err)
		}
		pb2, err := Transcode(nil, mp, CodecMsgpack, CodecProtobuf)
		if err != nil {
			t.Fatalf("%.40s: from msgpack: %v", js, err)
		}
		if v2, err := libValue(pb2); err != nil || !proto.Equal(v, v2) {
			t.Fatalf("%.40s: via msgpack %v, %v", js, v2, err)
		}
	}
	// Invalid UTF-8 from a service becomes U+FFFD.
	pb, err := JSONToProtobuf(nil, []byte("{\"k\xff\":\"a\xffb\"}"))
	if v, lerr := libValue(pb); err != nil || lerr != nil || v.GetStructValue().GetFields()["k\ufffd"].GetStringValue() != "a\ufffdb" {
		t.Fatalf("bad UTF-8: %v %v %v", v, err, lerr)
	}
	for _, bad := range []string{``, `nul`, `[1,]`, `{"a"}`, `{"a":1}x`, `1e400`, `"\x01"`, strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)} {
		if out, err := JSONToProtobuf([]byte("pre"), []byte(bad)); err == nil || string(out) != "pre" {
			t.Errorf("%.40q: accepted (%q)", bad, out)
		}
	}
	nan := protowire.AppendFixed64([]byte{0x11}, math.Float64bits(math.NaN()))
	if _, err := ProtobufToJSON(nil, nan); err == nil {
		t.Error("NaN accepted towards JSON")
	}
}

func TestDecodeProtobufAllocs(t *testing.T) {
	s := loadPBSchema(t)
	msgs := [][]byte{
		pbTestRoomMessage(t),
		s.clientFromJSON(t, `{"type":"publish","channel":"c","data":{"p":[1,2,{"q":"r"}]},"filter":{"tag":"region","in":["eu","us"]},"id":"x"}`),
		s.clientFromJSON(t, `{"type":"resume","room":"lobby","since":41}`),
	}
	var e Envelope
	for _, m := range msgs {
		if allocs := testing.AllocsPerRun(100, func() {
			if err := DecodeProtobuf(m, &e); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("DecodeProtobuf(% x) allocates %.1f times per call", m, allocs)
		}
	}
}

func TestProtobufTranscodeAllocs(t *testing.T) {
	in := []byte(`{"text":"hello \u00e9","n":[1,2.5,-3,true,null],"nested":{"k":"v"},"long":"` + strings.Repeat("z", 300) + `"}`)
	pb, _ := JSONToProtobuf(nil, in)
	buf := make([]byte, 0, 2048)
	if a := testing.AllocsPerRun(50, func() { buf, _ = JSONToProtobuf(buf[:0], in) }); a != 0 {
		t.Errorf("JSONToProtobuf: %.1f allocs", a)
	}
	if a := testing.AllocsPerRun(50, func() { buf, _ = ProtobufToJSON(buf[:0], pb) }); a != 0 {
		t.Errorf("ProtobufToJSON: %.1f allocs", a)
	}
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: pb, ID: []byte("gw-a-1"), TS: 1}
	if a := testing.AllocsPerRun(50, func() { buf = CodecProtobuf.AppendDelivery(buf[:0], &d) }); a != 0 {
		t.Errorf("AppendDelivery: %.1f allocs", a)
	}
}

func TestProtobufCodec(t *testing.T) {
	c, ok := ParseCodec("gw.protobuf")
	if !ok || c != CodecProtobuf || c.Subprotocol() != SubprotocolProtobuf || !c.Binary() {
		t.Fatalf("ParseCodec: %v %v", c, ok)
	}
	var e Envelope
	if err := c.Decode(pbTestRoomMessage(t), &e); err != nil || e.Type != TypeMessage {
		t.Fatalf("Decode: %v %v", err, e.Type)
	}
}

// pbTestRoomMessage is a typical room message in gw.protobuf.
func pbTestRoomMessage(t testing.TB) []byte {
	return loadPBSchema(t).clientFromJSON(t, `{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`)
}

// TestProtobufDocExample checks the gw.protobuf example bytes in
// docs/protocol.md against our encoder.
func TestProtobufDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- gw.protobuf example: begin -->", "<!-- gw.protobuf example: end -->"
	_, rest, ok := strings.Cut(string(doc), begin)
	block, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("docs/protocol.md lacks the %q ... %q markers", begin, end)
	}
	var hexText strings.Builder
	inHex := false
	for _, line := range strings.Split(block, "\n") {
		switch {
		case line == "```hex":
			inHex = true
		case line == "```":
			inHex = false
		case inHex:
			hexText.WriteString(strings.ReplaceAll(line, " ", ""))
		}
	}
	got, err := hex.DecodeString(hexText.String())
	if err != nil || len(got) == 0 {
		t.Fatalf("example hex: %v", err)
	}
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: pbTestData(t, CodecProtobuf, `{"text":"hi"}`),
		ID: []byte("a1b2c3d4-0-2s"), TS: 1764580000000}
	want := CodecProtobuf.AppendDelivery(nil, &d)
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/protocol.md example:\n% x\nencoder writes:\n% x", got, want)
	}
	jsonForm := CodecJSON.AppendDelivery(nil, &Delivery{Target: d.Target, Name: d.Name, From: d.From, Data: []byte(`{"text":"hi"}`), ID: d.ID, TS: d.TS})
	mpForm := CodecMsgpack.AppendDelivery(nil, &Delivery{Target: d.Target, Name: d.Name, From: d.From, Data: pbTestData(t, CodecMsgpack, `{"text":"hi"}`), ID: d.ID, TS: d.TS})
	if sizes := fmt.Sprintf("is %d bytes in gw.protobuf (%d in gw.msgpack, %d in gw.json)", len(want), len(mpForm), len(jsonForm)); !strings.Contains(block, sizes) {
		t.Fatalf("the example block should say %q", sizes)
	}
	if !strings.Contains(block, string(jsonForm)) {
		t.Fatalf("the example block should show the gw.json form %s", jsonForm)
	}
}

// FuzzProtobufDecode: DecodeProtobuf never panics, returns only
// bad_request errors, and agrees with the library reading the published
// schema: what we accept the library accepts with the same fields, and
// what the library accepts, re-encoded canonically, we accept unless it is
// semantically refused (unknown type or priority, a Value without kind).
func FuzzProtobufDecode(f *testing.F) {
	s := loadPBSchema(f)
	for _, js := range gwJSONClientMessages {
		f.Add(s.clientFromJSON(f, js))
	}
	f.Add([]byte{0x0a, 0x04, 'p', 'i', 'n', 'g', 0x42, 0x02, 0x08, 0x00, 0x42, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		var e Envelope
		err := DecodeProtobuf(p, &e)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
				t.Fatalf("error %v is not a bad_request", err)
			}
		}
		lib := dynamicpb.NewMessage(s.client)
		libErr, panicked := pbLibUnmarshal(p, lib)
		if panicked {
			// google.golang.org/protobuf v1.36.12's reflective decoder
			// (dynamicpb) panics on a map entry that repeats its key with
			// another wire type ("type mismatch: cannot convert nil to map
			// key"): no oracle for this input, ours must merely not panic.
			return
		}
		if err == nil || err == ErrMissingType {
			if libErr != nil {
				t.Fatalf("we accept % x, the library does not: %v", p, libErr)
			}
			pbCompareEnvelope(t, s, lib, &e)
			return
		}
		if libErr != nil {
			return
		}
		canon, merr := proto.MarshalOptions{Deterministic: true}.Marshal(lib)
		if merr != nil {
			t.Fatal(merr)
		}
		if err = DecodeProtobuf(canon, &e); err == nil || err == ErrMissingType {
			pbCompareEnvelope(t, s, lib, &e)
			return
		}
		get := func(name string) string { return lib.Get(s.client.Fields().ByName(protoreflect.Name(name))).String() }
		semantic := (get("type") != "" && lookupType([]byte(get("type"))) == TypeNone) ||
			(get("priority") != "" && !pbKnownPriority(get("priority")))
		for _, name := range []string{"data", "filter"} {
			fd := s.client.Fields().ByName(protoreflect.Name(name))
			if !lib.Has(fd) {
				continue
			}
			b, _ := proto.Marshal(lib.Get(fd).Message().Interface())
			if name == "filter" {
				b = protowire.AppendBytes([]byte{0x2a}, b)
			}
			v, _ := libValue(b)
			semantic = semantic || hasEmptyValue(v) || err == errJSONDepth
		}
		// A known field with another wire type: the library keeps it as
		// an unknown field, we refuse it (see DecodeProtobuf).
		semantic = semantic || (err == errPBWireType && len(lib.GetUnknown()) > 0)
		if !semantic {
			t.Fatalf("library accepts % x (canonically % x), we refuse: %v", p, canon, err)
		}
	})
}

// pbLibUnmarshal runs the library decoder, reporting a panic of its own.
func pbLibUnmarshal(p []byte, m *dynamicpb.Message) (err error, panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return proto.Unmarshal(p, m), false
}

func pbKnownPriority(s string) bool { _, ok := lookupPriority([]byte(s)); return ok }

// pbCompareEnvelope checks e against the library's reading lib.
func pbCompareEnvelope(t *testing.T, s pbSchema, lib *dynamicpb.Message, e *Envelope) {
	t.Helper()
	fields := s.client.Fields()
	str := func(name string) string { return lib.Get(fields.ByName(protoreflect.Name(name))).String() }
	if typ := str("type"); e.Type.String() != typ {
		t.Fatalf("type %q, library %q", e.Type, typ)
	}
	for name, got := range map[string][]byte{"id": e.ID, "token": e.Token, "room": e.Room, "channel": e.Channel, "to": e.To} {
		if string(got) != str(name) {
			t.Fatalf("%s %q, library %q", name, got, str(name))
		}
	}
	if p := str("priority"); (p == "" && e.Priority != PriorityNormal) || (p != "" && e.Priority.String() != p) {
		t.Fatalf("priority %v, library %q", e.Priority, p)
	}
	since := fields.ByName("since")
	if e.HasSince != lib.Has(since) || e.Since != lib.Get(since).Uint() {
		t.Fatalf("since %v %d, library %v %d", e.HasSince, e.Since, lib.Has(since), lib.Get(since).Uint())
	}
	for _, name := range []string{"data", "filter"} {
		fd := fields.ByName(protoreflect.Name(name))
		raw := e.Data
		if name == "filter" {
			raw = e.Filter
		}
		if lib.Has(fd) != (raw != nil) {
			t.Fatalf("%s present %v, library %v", name, raw != nil, lib.Has(fd))
		}
		if raw == nil {
			continue
		}
		ours, err := libValue(raw)
		if err != nil {
			t.Fatalf("%s: our raw bytes % x are not a Value: %v", name, raw, err)
		}
		libBytes, _ := proto.Marshal(lib.Get(fd).Message().Interface())
		want := new(structpb.Value)
		if name == "filter" {
			st := new(structpb.Struct)
			if err := proto.Unmarshal(libBytes, st); err != nil {
				t.Fatal(err)
			}
			want = structpb.NewStructValue(st)
		} else if err := proto.Unmarshal(libBytes, want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(ours, want) {
			t.Fatalf("%s: ours %v, library %v", name, ours, want)
		}
		// What we accept has a JSON form unless it holds NaN or infinity.
		if js, err := ProtobufToJSON(nil, raw); err == nil {
			lj, lerr := protojson.Marshal(want)
			if lerr != nil || !jsonEqual(t, js, lj) {
				t.Fatalf("%s: JSON %s, protojson %s (%v)", name, js, lj, lerr)
			}
		} else if err != errMPNaN {
			t.Fatalf("%s: accepted by the decoder but not transcodable: %v", name, err)
		}
	}
}

// FuzzProtobufValueToJSON: random JSON made a Value by the library must
// come out of ProtobufToJSON as the same JSON value; and the fuzz input read
// as Value bytes directly: what we turn into JSON the library reads the
// same, and what the library reads (canonically re-encoded) we read unless
// it has no JSON form.
func FuzzProtobufValueToJSON(f *testing.F) {
	for _, js := range []string{`{"text":"hi","n":[1,2.5,-3e-9,true,null]}`, `"\u00e9"`, `[[],{}]`, `1e300`} {
		f.Add([]byte(js))
		pb, _ := JSONToProtobuf(nil, []byte(js))
		f.Add(pb)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var v any
		if json.Unmarshal(in, &v) == nil {
			if sv, err := structpb.NewValue(v); err == nil {
				b, err := proto.Marshal(sv)
				if err != nil {
					t.Fatal(err)
				}
				js, err := ProtobufToJSON(nil, b)
				if err != nil {
					if err == errJSONDepth {
						return
					}
					t.Fatalf("%s: library Value % x refused: %v", in, b, err)
				}
				lib, _ := protojson.Marshal(sv)
				if !jsonEqual(t, js, lib) {
					t.Fatalf("%s: ours %s, protojson %s", in, js, lib)
				}
			}
		}
		// The input as Value bytes.
		js, err := ProtobufToJSON(nil, in)
		lv, lerr := libValue(in)
		if err == nil {
			if lerr != nil {
				t.Fatalf("we read % x, the library does not: %v", in, lerr)
			}
			lj, err := protojson.Marshal(lv)
			if err != nil || !jsonEqual(t, js, lj) {
				t.Fatalf("% x: ours %s, protojson %s (%v)", in, js, lj, err)
			}
			return
		}
		if lerr != nil {
			return
		}
		if _, err := protojson.Marshal(lv); err != nil {
			return // no JSON form for the library either
		}
		canon, _ := proto.MarshalOptions{Deterministic: true}.Marshal(lv)
		if _, err := ProtobufToJSON(nil, canon); err != nil && err != errJSONDepth {
			t.Fatalf("library reads % x (canonically % x), we refuse: %v", in, canon, err)
		}
	})
}

// FuzzJSONToProtobuf: random JSON through our encoder must be read by the
// library as the same value (protojson equal as JSON values), and invalid
// JSON must be refused.
func FuzzJSONToProtobuf(f *testing.F) {
	for _, js := range []string{`{"text":"hi","n":[1,2.5,-3e-9,true,null]}`, `"\u00e9\ud800"`, `[[],{}]`, `9007199254740993`, `{"a":1,"a":"b"}`,
		`{"k":["` + strings.Repeat("x", 130) + `",{"\n":"` + strings.Repeat("\u00e9", 50) + `"}]}`} {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		pb, err := JSONToProtobuf(nil, in)
		var want any
		stdErr := json.Unmarshal(in, &want)
		if err != nil {
			if stdErr == nil && err != errJSONDepth && err != errNumRange && utf8.Valid(in) {
				t.Fatalf("%q: encoding/json reads it, we refuse: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		v, lerr := libValue(pb)
		if lerr != nil {
			t.Fatalf("%q: library rejects our Value % x: %v", in, pb, lerr)
		}
		lj, lerr := protojson.Marshal(v)
		if lerr != nil {
			t.Fatalf("%q: protojson: %v", in, lerr)
		}
		if utf8.Valid(in) && stdErr == nil && !jsonEqual(t, lj, in) {
			t.Fatalf("%q: library reads %s", in, lj)
		}
	})
}

func BenchmarkDecodeProtobuf(b *testing.B) {
	msg := pbTestRoomMessage(b)
	var e Envelope
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := DecodeProtobuf(msg, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendDeliveryProtobuf(b *testing.B) {
	data, _ := JSONToProtobuf(nil, []byte(`{"text":"hi"}`))
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: data, ID: []byte("gw-a-1"), TS: 1733040000000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = CodecProtobuf.AppendDelivery(buf[:0], &d)
	}
}

func BenchmarkJSONToProtobuf(b *testing.B) {
	in := []byte(`{"text":"hello world","user":{"id":12345,"name":"alice","tags":["a","b"]},"score":98.6,"ok":true}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		buf, _ = JSONToProtobuf(buf[:0], in)
	}
}

func BenchmarkProtobufToJSON(b *testing.B) {
	in, _ := JSONToProtobuf(nil, []byte(`{"text":"hello world","user":{"id":12345,"name":"alice","tags":["a","b"]},"score":98.6,"ok":true}`))
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		buf, _ = ProtobufToJSON(buf[:0], in)
	}
}
