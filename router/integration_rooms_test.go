package router

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Section 3 rows join, leave, message: replies, delivery to every member
// except the sender's own connection (but including the sender's other
// connections), ack only with an id.
func TestIntegrationRoomJoinMessageLeave(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	phone := g.user("alice")
	laptop := g.user("alice")
	bob := g.user("bob")
	outsider := g.user("zed")
	for _, c := range []*tclient{phone, laptop, bob} {
		c.join("lobby")
	}
	phone.join("lobby") // joining twice is harmless and answered alike

	phone.send(`{"type":"message","room":"lobby","data":{"text":"hi","n":[1,2.5,null,true]},"id":"c1"}`)
	if ack := phone.expect("ack"); ack["id"] != "c1" {
		t.Fatalf("ack %v", ack)
	}
	want := map[string]any{"text": "hi", "n": []any{1.0, 2.5, nil, true}}
	var ids []string
	for _, c := range []*tclient{laptop, bob} {
		m := c.expectDelivery("room", "lobby", "alice")
		if !reflect.DeepEqual(m["data"], want) {
			t.Fatalf("data %v, want %v", m["data"], want)
		}
		ids = append(ids, m["id"].(string))
	}
	if ids[0] != ids[1] {
		t.Fatalf("one message, two ids: %v", ids)
	}
	phone.none(quiet) // never its own message, and the double join did not double it
	outsider.none(0)

	// Without an id there is no ack: the next reply is the pong.
	bob.send(`{"type":"message","room":"lobby","data":"no id"}`)
	bob.alive()
	phone.expectDelivery("room", "lobby", "bob")
	laptop.expectDelivery("room", "lobby", "bob")

	// Data of every JSON kind passes through unchanged.
	for _, data := range []string{`null`, `0`, `-12.5e3`, `"é\u0000\"x"`, `[]`, `{}`, `{"a":{"b":[{"c":1}]}}`, `true`} {
		bob.send(`{"type":"message","room":"lobby","data":` + data + `}`)
		m := phone.expectDelivery("room", "lobby", "bob")
		laptop.expectDelivery("room", "lobby", "bob")
		var wantData any
		mustUnmarshal(t, data, &wantData)
		if !reflect.DeepEqual(m["data"], wantData) {
			t.Fatalf("data %s arrived as %#v", data, m["data"])
		}
	}

	// leave: left {room}; no more deliveries to that connection.
	laptop.send(`{"type":"leave","room":"lobby","id":"l1"}`)
	if m := laptop.expect("left"); m["room"] != "lobby" || m["id"] != "l1" {
		t.Fatalf("left %v", m)
	}
	bob.send(`{"type":"message","room":"lobby","data":"after leave"}`)
	phone.expectDelivery("room", "lobby", "bob")
	laptop.alive() // the pong comes first: no delivery was queued before it
	laptop.none(quiet)
	// leaving again: not_joined
	laptop.send(`{"type":"leave","room":"lobby","id":"l2"}`)
	if e := laptop.expectErr(wire.CodeNotJoined); e["id"] != "l2" {
		t.Fatalf("error %v", e)
	}
	// Re-joining works.
	laptop.join("lobby")
	bob.send(`{"type":"message","room":"lobby","data":"back"}`)
	laptop.expectDelivery("room", "lobby", "bob")
	phone.expectDelivery("room", "lobby", "bob")
}

// `priority` is accepted on room messages in each of its values.
func TestIntegrationRoomPriorityAccepted(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	a, b := g.user("a"), g.user("b")
	a.join("r")
	b.join("r")
	for _, p := range []string{"high", "normal", "low"} {
		a.send(`{"type":"message","room":"r","priority":"` + p + `","data":"` + p + `","id":"` + p + `"}`)
		a.expect("ack")
		if m := b.expectDelivery("room", "r", "a"); m["data"] != p {
			t.Fatalf("priority %s: %v", p, m)
		}
	}
	a.send(`{"type":"message","room":"r","priority":null,"data":"null priority"}`)
	b.expectDelivery("room", "r", "a")
}

// Bad input for join, leave and message: the exact error code, and both the
// offending connection and the others keep working.
func TestIntegrationRoomBadInput(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	c := g.userWith(auth.Claims{Sub: "limited", Rooms: []string{"lobby", "chat.*"}}, dialOpts{})
	peer := g.user("peer")
	c.join("lobby")
	c.join("chat.general") // glob in the rooms claim
	peer.join("lobby")
	long := strings.Repeat("r", wire.MaxNameLen+1)
	cases := []struct{ msg, code string }{
		{`{"id":"e","type":"join"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":""}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":5}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":{"a":1}}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":"has space"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":"slash/room"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":"` + long + `"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"join","room":"secret"}`, wire.CodeForbidden},
		{`{"id":"e","type":"join","room":"chat.a.b"}`, wire.CodeForbidden}, // * stays inside one token
		{`{"id":"e","type":"join","room":"chatx"}`, wire.CodeForbidden},
		{`{"id":"e","type":"leave"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"leave","room":7}`, wire.CodeBadRequest},
		{`{"id":"e","type":"leave","room":"never-joined"}`, wire.CodeNotJoined},
		{`{"id":"e","type":"message","data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"lobby"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":true,"data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"bad name","data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"elsewhere","data":1}`, wire.CodeNotJoined},
		{`{"id":"e","type":"message","room":"secret","data":1}`, wire.CodeNotJoined},
		{`{"id":"e","type":"message","room":"lobby","data":1,"priority":"urgent"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"lobby","data":1,"priority":3}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"lobby","data":[1,}`, wire.CodeBadRequest},
		{`{"id":"e","type":"message","room":"lobby","data":nul}`, wire.CodeBadRequest},
		{`{"id":"e","type":"nosuch","room":"lobby"}`, wire.CodeBadRequest},
		{`{"id":"e","room":"lobby","data":1}`, wire.CodeBadRequest},
		{`{"id":"` + strings.Repeat("i", wire.MaxClientIDLen+1) + `","type":"message","room":"lobby","data":1}`, wire.CodeBadRequest},
	}
	for i, tc := range cases {
		c.send(tc.msg)
		e := c.expectErr(tc.code)
		if len(tc.msg) < 300 && strings.HasPrefix(tc.msg, `{"id":"e"`) && e["id"] != "e" {
			t.Fatalf("case %d %s: error %v does not echo the id", i, tc.msg, e)
		}
		peer.none(0)
		// The connection keeps working: a room message is still delivered.
		c.send(fmt.Sprintf(`{"type":"message","room":"lobby","data":%d,"id":"ok"}`, i))
		c.expect("ack")
		if m := peer.expectDelivery("room", "lobby", "limited"); m["data"] != float64(i) {
			t.Fatalf("case %d: delivery %v", i, m)
		}
	}
	// Malformed JSON that is not an object at all, and a binary frame on gw.json.
	for _, raw := range []string{``, `   `, `nope`, `[1,2]`, `"str"`, `{`, `{"type":"ping"`, `{"type":"ping"}}`, `{"type" "ping"}`, `{'type':'ping'}`} {
		c.send(raw)
		c.expectErr(wire.CodeBadRequest)
		c.alive()
	}
	c.sendRaw(websocket.BinaryMessage, []byte(`{"type":"ping"}`))
	c.expectErr(wire.CodeBadRequest)
	c.alive()
	peer.send(`{"type":"message","room":"lobby","data":"still here"}`)
	c.expectDelivery("room", "lobby", "peer")
}

// A message over -max-message-size closes with 1009; the room keeps working.
func TestIntegrationRoomOversize1009(t *testing.T) {
	g := startGateway(t, engine.Options{MaxMessageSize: 4096}, Options{})
	big, a, b := g.user("big"), g.user("a"), g.user("b")
	for _, c := range []*tclient{big, a, b} {
		c.join("r")
	}
	big.send(`{"type":"message","room":"r","data":` + filler(3000) + `}`) // under the limit: fine
	a.expectDelivery("room", "r", "big")
	b.expectDelivery("room", "r", "big")
	big.send(`{"type":"message","room":"r","data":` + filler(5000) + `}`)
	big.expectClose(1009)
	a.none(quiet)
	a.send(`{"type":"message","room":"r","data":"after"}`)
	b.expectDelivery("room", "r", "a")
	a.alive()
}

// gw.json and gw.msgpack clients in one room see the same messages, each in
// its own encoding; subprotocol negotiation.
func TestIntegrationRoomMixedCodecs(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	js := g.user("js", wire.SubprotocolJSON)
	mp := g.user("mp", wire.SubprotocolMsgpack)
	mp2 := g.user("mp2", "x-unknown", wire.SubprotocolMsgpack) // the first known one is picked
	plain := g.user("plain")                                   // offers nothing: gw.json
	for c, want := range map[*tclient]string{js: wire.SubprotocolJSON, mp: wire.SubprotocolMsgpack, mp2: wire.SubprotocolMsgpack, plain: ""} {
		if got := c.conn.Subprotocol(); got != want {
			t.Fatalf("%s: subprotocol %q, want %q", c, got, want)
		}
	}
	if mp.codec != wire.CodecMsgpack || plain.codec != wire.CodecJSON {
		t.Fatal("codec selection")
	}
	all := []*tclient{js, mp, mp2, plain}
	for _, c := range all {
		c.join("mix") // replies come in each client's encoding (checked by read)
	}
	data := `{"s":"héllo","i":-7,"u":18446744073709551615,"f":0.25,"b":[true,false,null],"o":{"k":"v"}}`
	var want any
	mustUnmarshal(t, data, &want)
	for _, sender := range all {
		sender.send(`{"type":"message","room":"mix","data":` + data + `,"id":"m"}`)
		sender.expect("ack")
		var ids []string
		for _, c := range all {
			if c == sender {
				continue
			}
			m := c.expectDelivery("room", "mix", sender.user)
			if !reflect.DeepEqual(m["data"], want) {
				t.Fatalf("%s -> %s: data %#v, want %#v", sender.codec, c.codec, m["data"], want)
			}
			ids = append(ids, m["id"].(string))
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Fatalf("one message, different ids across codecs: %v", ids)
			}
		}
	}
	// Malformed msgpack, and a text frame on a gw.msgpack connection.
	for _, raw := range [][]byte{{0xc1}, {0x81, 0xa4, 't', 'y'}, {0x92, 0x01, 0x02}, {0x81, 0x01, 0x02}, {0x80, 0x00}, {}} {
		mp.sendRaw(websocket.BinaryMessage, raw)
		mp.expectErr(wire.CodeBadRequest)
		mp.alive()
	}
	mp.sendRaw(websocket.TextMessage, []byte(`{"type":"ping"}`))
	mp.expectErr(wire.CodeBadRequest)
	// msgpack with wrong field types and missing fields.
	for _, msg := range []string{`{"type":"join","room":1}`, `{"type":"message","room":"mix"}`, `{"type":"join","room":"secret room"}`} {
		mp.send(msg)
		mp.expectErr(wire.CodeBadRequest)
	}
	mp.send(`{"type":"message","room":"mix","data":"still ok"}`)
	for _, c := range []*tclient{js, mp2, plain} {
		c.expectDelivery("room", "mix", "mp")
	}
}

// Message ids are unique (many senders, both loops) and ts is on every one.
func TestIntegrationRoomMessageIDsUnique(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{RateMsgs: -1})
	recv := g.user("recv")
	recv.join("ids")
	loops := map[int]bool{}
	var senders []*tclient
	for i := range 4 {
		c := g.connect(dialOpts{query: token(t, auth.Claims{Sub: fmt.Sprintf("s%d", i)})})
		loops[connLoop(t, c.expect("auth:ok"))] = true
		c.join("ids")
		senders = append(senders, c)
	}
	if len(loops) != 2 {
		t.Fatalf("senders on loops %v, want both", loops)
	}
	const per = 100
	for i := range per {
		for _, s := range senders {
			s.send(fmt.Sprintf(`{"type":"message","room":"ids","data":%d}`, i))
		}
	}
	seen := map[string]bool{}
	for range per * len(senders) {
		m := recv.expect("message")
		checkDelivery(t, m, "room", "ids", m["from"].(string))
		id := m["id"].(string)
		if seen[id] {
			t.Fatalf("duplicate message id %q", id)
		}
		seen[id] = true
	}
	recv.none(quiet)
	// Senders see each other's messages too (and never their own).
	for _, s := range senders {
		n := 0
		for range per * (len(senders) - 1) {
			m := s.expect("message")
			if m["id"] == nil || seen[m["id"].(string)] == false {
				t.Fatalf("sender got an id the receiver did not: %v", m)
			}
			n++
		}
		s.none(0)
	}
}

// Clients spread over both loops (Loops: 2) still receive everything: room
// messages from every member reach every other member, in order per sender.
func TestIntegrationRoomBothLoops(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 2}, Options{RateMsgs: -1})
	const n = 8
	var cs []*tclient
	loops := map[int]int{}
	for i := range n {
		c := g.connect(dialOpts{query: token(t, auth.Claims{Sub: fmt.Sprintf("u%d", i)})})
		loops[connLoop(t, c.expect("auth:ok"))]++
		c.join("spread")
		cs = append(cs, c)
	}
	if len(loops) != 2 {
		t.Fatalf("connections per loop %v: want both loops used", loops)
	}
	const per = 20
	for k := range per {
		for i, c := range cs {
			c.send(fmt.Sprintf(`{"type":"message","room":"spread","data":[%d,%d]}`, i, k))
		}
	}
	for j, c := range cs {
		next := make([]int, n) // next expected k per sender
		for range per * (n - 1) {
			m := c.expect("message")
			d := m["data"].([]any)
			i, k := int(d[0].(float64)), int(d[1].(float64))
			if i == j {
				t.Fatalf("client %d got its own message", j)
			}
			if m["from"] != fmt.Sprintf("u%d", i) || k != next[i] {
				t.Fatalf("client %d: %v out of order (want k=%d from u%d)", j, m, next[i], i)
			}
			next[i]++
		}
		c.none(0)
	}
}
