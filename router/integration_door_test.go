package router

import (
	"errors"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Names with an empty NATS token (a..b, .a, a.) would work on one instance,
// be acked, and never cross to another: they are refused at every door
// (issue 9, defect 10).
func TestIntegrationDoorRefusesEmptyNameTokens(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 1}, Options{})
	c := g.userWith(auth.Claims{Sub: "c", Pub: []string{"**"}}, dialOpts{})
	for _, name := range []string{"a..b", ".a", "a.", "."} {
		for _, msg := range []string{
			`{"type":"join","room":` + jsonString(name) + `,"id":"x"}`,
			`{"type":"subscribe","channel":` + jsonString(name) + `,"id":"x"}`,
			`{"type":"publish","channel":` + jsonString(name) + `,"data":1,"id":"x"}`,
			`{"type":"send","to":` + jsonString(name) + `,"data":1,"id":"x"}`,
			`{"type":"presence","room":` + jsonString(name) + `,"id":"x"}`,
		} {
			c.send(msg)
			if m := c.expectErr(wire.CodeBadRequest); m["id"] != "x" {
				t.Fatalf("%s: %v", msg, m)
			}
		}
		for _, kind := range []Kind{KindRoom, KindUser, KindChannel} {
			if err := g.router.PublishService(kind, name, []byte(`1`), "svc", wire.PriorityNormal, nil); err == nil {
				t.Fatalf("PublishService(%s, %q) accepted", kind, name)
			}
		}
		if _, err := auth.MintHS256(testSecret, auth.Claims{Sub: name}, 0); !errors.Is(err, auth.ErrBadSub) {
			t.Fatalf("sub %q: %v", name, err)
		}
	}
	for _, p := range []string{"a..*", "chat.", ".*"} {
		if _, err := auth.MintHS256(testSecret, auth.Claims{Sub: "u", Rooms: []string{p}}, 0); !errors.Is(err, auth.ErrBadClaims) {
			t.Fatalf("rooms pattern %q: %v", p, err)
		}
	}
	c.alive()
}

// A JSON number beyond float64 (1e400) reached JSON receivers and silently
// not msgpack ones: it is refused at the door with a clear error, from
// clients and from the publish API; a tiny one (1e-400, 0 everywhere)
// reaches both (issue 9, defect 10).
func TestIntegrationDoorRefusesOutOfRangeNumbers(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 1}, Options{})
	s := g.user("s")
	js, mp := g.user("js"), g.user("mp", wire.SubprotocolMsgpack)
	for _, c := range []*tclient{s, js, mp} {
		c.join("r")
	}
	for _, data := range []string{`1e400`, `[-1e400]`, `{"x":1.8e308}`, `1` + strings.Repeat("0", 400)} {
		s.send(`{"type":"message","id":"m","room":"r","data":` + data + `}`)
		m := s.expectErr(wire.CodeBadRequest)
		if msg, _ := m["message"].(string); m["id"] != "m" || !strings.Contains(msg, "out of range") {
			t.Fatalf("data %s: %v", data, m)
		}
		if err := g.router.PublishService(KindRoom, "r", []byte(data), "svc", wire.PriorityNormal, nil); err == nil {
			t.Fatalf("PublishService accepted data %s", data)
		}
	}
	s.send(`{"type":"message","room":"r","data":[1e-400,1e308],"id":"ok"}`)
	s.expect("ack")
	for _, c := range []*tclient{js, mp} {
		m := c.expectDelivery("room", "r", "s")
		if d := m["data"].([]any); d[0] != float64(0) || d[1] != 1e308 {
			t.Fatalf("%s got %v", c.user, d)
		}
	}
	if st := g.routerStats(); st.Undeliverable != 0 || st.Deliveries != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Data with no form in a receiver's codec (a msgpack ext for a JSON
// receiver) is not delivered to that receiver, and that is counted.
func TestIntegrationUndeliverableCounted(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 1}, Options{})
	mp, js := g.user("mp", wire.SubprotocolMsgpack), g.user("js")
	mp.join("r")
	js.join("r")
	// {"type":"message","room":"r","data":<fixext1 type 1>,"id":"e"}
	msg := []byte{0x84, 0xa4, 't', 'y', 'p', 'e', 0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e',
		0xa4, 'r', 'o', 'o', 'm', 0xa1, 'r', 0xa4, 'd', 'a', 't', 'a', 0xd4, 0x01, 0x00, 0xa2, 'i', 'd', 0xa1, 'e'}
	mp.sendRaw(websocket.BinaryMessage, msg)
	mp.expect("ack")
	js.alive() // the message never came before the pong
	if st := g.routerStats(); st.Undeliverable != 1 {
		t.Fatalf("stats %+v: want one undeliverable", st)
	}
}
