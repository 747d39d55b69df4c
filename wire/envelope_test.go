package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestEnvelopeValidate(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		e    Envelope
		err  error
	}{
		{name: "auth", e: Envelope{Type: TypeAuth, Token: b("t")}},
		{name: "auth no token", e: Envelope{Type: TypeAuth}, err: errMissingToken},
		{name: "ping", e: Envelope{Type: TypePing}},
		{name: "join", e: Envelope{Type: TypeJoin, Room: b("chat.general:1_-")}},
		{name: "join no room", e: Envelope{Type: TypeJoin}, err: errMissingRoom},
		{name: "join empty room", e: Envelope{Type: TypeJoin, Room: b("")}, err: errMissingRoom},
		{name: "join bad room", e: Envelope{Type: TypeJoin, Room: b("a b")}, err: errBadRoom},
		{name: "join long room", e: Envelope{Type: TypeJoin, Room: b(long)}, err: errBadRoom},
		{name: "join 128", e: Envelope{Type: TypeJoin, Room: b(long[:128])}},
		{name: "leave", e: Envelope{Type: TypeLeave, Room: b("r")}},
		{name: "leave wildcard", e: Envelope{Type: TypeLeave, Room: b("r.*")}, err: errBadRoom},
		{name: "presence no room", e: Envelope{Type: TypePresence}, err: errMissingRoom},
		{name: "resume", e: Envelope{Type: TypeResume, Room: b("r"), HasSince: true}},
		{name: "resume no since", e: Envelope{Type: TypeResume, Room: b("r")}, err: errMissingSince},
		{name: "resume no room", e: Envelope{Type: TypeResume, HasSince: true}, err: errMissingRoom},
		{name: "message", e: Envelope{Type: TypeMessage, Room: b("r"), Data: b("1"), Priority: PriorityHigh}},
		{name: "message no data", e: Envelope{Type: TypeMessage, Room: b("r")}, err: errMissingData},
		{name: "message no room", e: Envelope{Type: TypeMessage, Data: b("1")}, err: errMissingRoom},
		{name: "send", e: Envelope{Type: TypeSend, To: b("bob"), Data: b("null")}},
		{name: "send no to", e: Envelope{Type: TypeSend, Data: b("1")}, err: errMissingTo},
		{name: "send bad to", e: Envelope{Type: TypeSend, To: b("b/ob"), Data: b("1")}, err: errBadTo},
		{name: "send no data", e: Envelope{Type: TypeSend, To: b("bob")}, err: errMissingData},
		{name: "subscribe", e: Envelope{Type: TypeSubscribe, Channel: b("prices.btc")}},
		{name: "unsubscribe no channel", e: Envelope{Type: TypeUnsubscribe}, err: errMissingChan},
		{name: "subscribe bad channel", e: Envelope{Type: TypeSubscribe, Channel: b("prices.>")}, err: errBadChan},
		{name: "publish", e: Envelope{Type: TypePublish, Channel: b("c"), Data: b("{}")}},
		{name: "publish no data", e: Envelope{Type: TypePublish, Channel: b("c")}, err: errMissingData},
		{name: "publish no channel", e: Envelope{Type: TypePublish, Data: b("{}")}, err: errMissingChan},
		{name: "id 64", e: Envelope{Type: TypePing, ID: b(long[:64])}},
		{name: "id 65", e: Envelope{Type: TypePing, ID: b(long[:65])}, err: errLongID},
		{name: "bad priority", e: Envelope{Type: TypePing, Priority: 9}, err: errBadPriority},
		{name: "rpc", e: Envelope{Type: TypeRPC, ID: b("r1"), Method: b("orders.get")}},
		{name: "rpc no data", e: Envelope{Type: TypeRPC, ID: b("r1"), Method: b("a:b-c_d")}},
		{name: "rpc no id", e: Envelope{Type: TypeRPC, Method: b("orders.get")}, err: errMissingRPCID},
		{name: "rpc no method", e: Envelope{Type: TypeRPC, ID: b("r1")}, err: errMissingMeth},
		{name: "rpc bad method", e: Envelope{Type: TypeRPC, ID: b("r1"), Method: b("orders..get")}, err: errBadMethod},
		{name: "rpc wildcard method", e: Envelope{Type: TypeRPC, ID: b("r1"), Method: b("orders.>")}, err: errBadMethod},
		{name: "rpc long method", e: Envelope{Type: TypeRPC, ID: b("r1"), Method: b(long)}, err: errBadMethod},
		{name: "no type", e: Envelope{}, err: ErrMissingType},
		{name: "bad type", e: Envelope{Type: 99}, err: errUnknownType},
	}
	for _, tt := range tests {
		if err := tt.e.Validate(); err != tt.err {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.err)
		}
	}
}

func TestEnvelopeNamesOfTypes(t *testing.T) {
	for typ := TypeAuth; typ <= TypeResume; typ++ {
		if lookupType([]byte(typ.String())) != typ {
			t.Errorf("type %d (%q) does not round-trip", typ, typ.String())
		}
	}
	for _, p := range []Priority{PriorityNormal, PriorityLow, PriorityHigh} {
		if got, ok := lookupPriority([]byte(p.String())); !ok || got != p {
			t.Errorf("priority %v does not round-trip", p)
		}
	}
	for _, c := range []Codec{CodecJSON, CodecMsgpack, CodecCBOR, CodecProtobuf} {
		if got, ok := ParseCodec(c.Subprotocol()); !ok || got != c {
			t.Errorf("codec %v does not round-trip", c)
		}
	}
	if _, ok := ParseCodec("gw.xml"); ok {
		t.Error("gw.xml accepted")
	}
}

// normalize makes decoded JSON and msgpack values comparable: every number
// becomes float64 and bin becomes a string.
func normalizeNum(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case []byte:
		return string(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeNum(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeNum(e)
		}
		return out
	}
	return v
}

// decodeAs decodes an encoded reply of either codec into normalized values.
func decodeReply(t *testing.T, c Codec, b []byte) map[string]any {
	t.Helper()
	var v any
	if c == CodecMsgpack {
		var rest []byte
		var err error
		if v, rest, err = mpTestDecode(b); err != nil || len(rest) != 0 {
			t.Fatalf("bad msgpack %x: %v", b, err)
		}
	} else if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	m, ok := normalizeNum(v).(map[string]any)
	if !ok {
		t.Fatalf("reply is not an object: %v", v)
	}
	return m
}

func TestEnvelopeCodecReplies(t *testing.T) {
	type obj = map[string]any
	id := []byte("c-1")
	tests := []struct {
		name string
		enc  func(c Codec, dst []byte) []byte
		want obj
	}{
		{name: "auth:ok", enc: func(c Codec, d []byte) []byte { return c.AppendAuthOK(d, "alice", "conn-1", "gw-a", nil) },
			want: obj{"type": "auth:ok", "user": "alice", "conn": "conn-1", "instance": "gw-a"}},
		{name: "auth:fail", enc: func(c Codec, d []byte) []byte { return c.AppendAuthFail(d, "token expired") },
			want: obj{"type": "auth:fail", "reason": "token expired"}},
		{name: "error", enc: func(c Codec, d []byte) []byte { return c.AppendError(d, CodeForbidden, "no \"room\"\n", id) },
			want: obj{"type": "error", "code": "forbidden", "message": "no \"room\"\n", "id": "c-1"}},
		{name: "protocol error", enc: func(c Codec, d []byte) []byte { return c.AppendProtocolError(d, errMissingRoom, nil) },
			want: obj{"type": "error", "code": "bad_request", "message": "missing room"}},
		{name: "pong", enc: func(c Codec, d []byte) []byte { return c.AppendPong(d, 1733040000000, id) },
			want: obj{"type": "pong", "ts": float64(1733040000000), "id": "c-1"}},
		{name: "joined", enc: func(c Codec, d []byte) []byte { return c.AppendSimple(d, ReplyJoined, "room", []byte("lobby"), id) },
			want: obj{"type": "joined", "room": "lobby", "id": "c-1"}},
		{name: "server joined", enc: func(c Codec, d []byte) []byte { return c.AppendServerJoined(d, ReplyJoined, "room", []byte("lobby")) },
			want: obj{"type": "joined", "room": "lobby", "server": true}},
		{name: "unsubscribed", enc: func(c Codec, d []byte) []byte {
			return c.AppendSimple(d, ReplyUnsubscribed, "channel", []byte("p.b"), nil)
		}, want: obj{"type": "unsubscribed", "channel": "p.b"}},
		{name: "ack", enc: func(c Codec, d []byte) []byte { return c.AppendAck(d, id, nil, 0) }, want: obj{"type": "ack", "id": "c-1"}},
		{name: "ack mid", enc: func(c Codec, d []byte) []byte { return c.AppendAck(d, id, []byte("gw-a-1-2"), 0) },
			want: obj{"type": "ack", "id": "c-1", "mid": "gw-a-1-2"}},
		{name: "ack mid seq", enc: func(c Codec, d []byte) []byte { return c.AppendAck(d, id, []byte("gw-a-1-2"), 1<<40) },
			want: obj{"type": "ack", "id": "c-1", "mid": "gw-a-1-2", "seq": float64(1 << 40)}},
		{name: "send ack", enc: func(c Codec, d []byte) []byte { return c.AppendSendAck(d, id, []byte("a1b2c3d4-0-7"), 3, true) },
			want: obj{"type": "ack", "id": "c-1", "mid": "a1b2c3d4-0-7", "delivered": float64(3), "remote": true}},
		{name: "send ack offline", enc: func(c Codec, d []byte) []byte { return c.AppendSendAck(d, nil, nil, 0, false) },
			want: obj{"type": "ack", "delivered": float64(0), "remote": false}},
		{name: "user:joined", enc: func(c Codec, d []byte) []byte { return c.AppendUserEvent(d, EventUserJoined, []byte("r"), "bob") },
			want: obj{"type": "user:joined", "room": "r", "user": "bob"}},
		{name: "presence", enc: func(c Codec, d []byte) []byte {
			return c.AppendPresence(d, []byte("r"), []string{"a", "b"}, id)
		}, want: obj{"type": "presence", "room": "r", "users": []any{"a", "b"}, "id": "c-1"}},
		{name: "presence truncated", enc: func(c Codec, d []byte) []byte {
			return c.AppendPresencePage(d, []byte("r"), []string{"a"}, true, id)
		}, want: obj{"type": "presence", "room": "r", "users": []any{"a"}, "truncated": true, "id": "c-1"}},
		{name: "presence empty", enc: func(c Codec, d []byte) []byte { return c.AppendPresence(d, []byte("r"), nil, nil) },
			want: obj{"type": "presence", "room": "r", "users": []any{}}},
		{name: "resumed", enc: func(c Codec, d []byte) []byte { return c.AppendResumed(d, []byte("r"), 42, false, nil) },
			want: obj{"type": "resumed", "room": "r", "seq": float64(42), "recovered": false}},
		{name: "gap", enc: func(c Codec, d []byte) []byte { return c.AppendGap(d, 17) }, want: obj{"type": "gap", "dropped": float64(17)}},
		{name: "reconnect", enc: func(c Codec, d []byte) []byte { return c.AppendReconnect(d, 2500) },
			want: obj{"type": "reconnect", "after_ms": float64(2500)}},
	}
	for _, tt := range tests {
		for _, c := range []Codec{CodecJSON, CodecMsgpack} {
			prefix := []byte("prefix")
			out := tt.enc(c, prefix)
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("%s/%v: dst not appended to", tt.name, c)
			}
			if got := decodeReply(t, c, out[len("prefix"):]); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s/%v: got %v, want %v", tt.name, c, got, tt.want)
			}
			buf := make([]byte, 0, 256)
			if allocs := testing.AllocsPerRun(20, func() { buf = tt.enc(c, buf[:0]) }); allocs != 0 {
				t.Errorf("%s/%v: %.1f allocs", tt.name, c, allocs)
			}
		}
	}
}

func TestEnvelopeAppendDelivery(t *testing.T) {
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: []byte(`{"text":"hi"}`),
		ID: []byte("gw-a-1"), Seq: 7, HasSeq: true, TS: 1733040000000}
	got := string(AppendDeliveryJSON(nil, &d))
	want := `{"type":"message","room":"lobby","from":"alice","data":{"text":"hi"},"id":"gw-a-1","seq":7,"ts":1733040000000}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	d2 := Delivery{Target: TargetUser, Name: []byte("bob"), TS: 5}
	if got := string(AppendDeliveryJSON(nil, &d2)); got != `{"type":"message","to":"bob","data":null,"ts":5}` {
		t.Fatalf("minimal delivery: %s", got)
	}
	d3 := Delivery{Target: TargetChannel, Name: []byte("c"), Data: mpTestEncode(map[string]any{"text": "hi"}), ID: []byte("x"), TS: -1}
	m := decodeReply(t, CodecMsgpack, AppendDeliveryMsgpack(nil, &d3))
	wantM := map[string]any{"type": "message", "channel": "c", "data": map[string]any{"text": "hi"}, "id": "x", "ts": float64(-1)}
	if !reflect.DeepEqual(m, wantM) {
		t.Fatalf("msgpack delivery: %v", m)
	}
	md := decodeReply(t, CodecMsgpack, AppendDeliveryMsgpack(nil, &Delivery{Name: []byte("r"), Seq: 1 << 40, HasSeq: true}))
	if md["seq"] != float64(1<<40) || md["data"] != nil || md["room"] != "r" {
		t.Fatalf("msgpack delivery: %v", md)
	}
}

func TestEnvelopeAppendJSONString(t *testing.T) {
	inputs := []string{"", "plain", "quote\" back\\ slash/", "ctl \x00\x01\x1f\x7f \b\f\n\r\t", "<tag>&amp;",
		"\u00e9\u20ac\U0001F600", "line\u2028sep\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate"}
	for _, s := range inputs {
		var ref bytes.Buffer
		enc := json.NewEncoder(&ref)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		var refBack string
		_ = json.Unmarshal(ref.Bytes(), &refBack)
		if back != refBack {
			t.Errorf("%q: round trip %q, encoding/json %q", s, back, refBack)
		}
		if string(got) != strings.TrimSuffix(ref.String(), "\n") {
			t.Logf("%q: %s differs in form from encoding/json %s", s, got, ref.String())
		}
	}
}

func BenchmarkAppendDeliveryJSON(b *testing.B) {
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: []byte(`{"text":"hi"}`),
		ID: []byte("gw-a-0000000001"), Seq: 7, HasSeq: true, TS: 1733040000000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDeliveryJSON(buf[:0], &d)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendDeliveryMsgpack(b *testing.B) {
	d := Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: mpTestEncode(map[string]any{"text": "hi"}),
		ID: []byte("gw-a-0000000001"), Seq: 7, HasSeq: true, TS: 1733040000000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDeliveryMsgpack(buf[:0], &d)
	}
	b.SetBytes(int64(len(buf)))
}

func ExampleCodec_AppendError_asJSON() {
	fmt.Println(string(CodecJSON.AppendError(nil, CodeNotJoined, "join the room first", []byte("c7"))))
	// Output: {"type":"error","code":"not_joined","message":"join the room first","id":"c7"}
}
