package router

import (
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Section 3 row send: every connection of the user (devices on both loops),
// ack {id, delivered, remote}.
func TestIntegrationSendAllDevices(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 2}, Options{})
	alice := g.user("alice")
	var bob []*tclient
	loops := map[int]bool{}
	for range 4 {
		c := g.connect(dialOpts{query: token(t, auth.Claims{Sub: "bob"})})
		loops[connLoop(t, c.expect("auth:ok"))] = true
		c.user = "bob"
		bob = append(bob, c)
	}
	if len(loops) != 2 {
		t.Fatalf("bob's devices on loops %v, want both", loops)
	}
	alice.send(`{"type":"send","to":"bob","data":{"hello":"bob"},"id":"s1"}`)
	ack := alice.expect("ack")
	if ack["id"] != "s1" || ack["delivered"] != 4.0 || ack["remote"] != false {
		t.Fatalf("ack %v, want delivered 4 remote false", ack)
	}
	var id string
	for _, c := range bob {
		m := c.expectDelivery("to", "bob", "alice")
		if m["data"].(map[string]any)["hello"] != "bob" {
			t.Fatalf("data %v", m)
		}
		if id == "" {
			id = m["id"].(string)
		} else if m["id"] != id {
			t.Fatalf("one send, two ids: %v %v", id, m["id"])
		}
	}
	// No id: no ack.
	alice.send(`{"type":"send","to":"bob","data":2}`)
	alice.alive()
	for _, c := range bob {
		c.expectDelivery("to", "bob", "alice")
	}
	// An offline user: delivered 0.
	alice.send(`{"type":"send","to":"nobody","data":1,"id":"s2"}`)
	if ack := alice.expect("ack"); ack["delivered"] != 0.0 || ack["id"] != "s2" {
		t.Fatalf("ack %v, want delivered 0", ack)
	}
	// To oneself: the other devices, not the sending one.
	bob[0].send(`{"type":"send","to":"bob","data":"sync","id":"s3"}`)
	if ack := bob[0].expect("ack"); ack["delivered"] != 3.0 {
		t.Fatalf("ack %v, want delivered 3", ack)
	}
	for _, c := range bob[1:] {
		c.expectDelivery("to", "bob", "bob")
	}
	bob[0].none(quiet)
	// A closed device is no longer counted.
	bob[3].close()
	eventually(t, "bob's closed device to be forgotten", func() bool {
		alice.send(`{"type":"send","to":"bob","data":"count","id":"s4"}`)
		return alice.expect("ack")["delivered"] == 3.0
	})
}

// Bad input for send.
func TestIntegrationSendBadInput(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	a, b := g.user("a"), g.user("b")
	for i, tc := range []struct{ msg, code string }{
		{`{"id":"e","type":"send","data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"","data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":42,"data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"b"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"not valid","data":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"b","data":1,"priority":"lowest"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"b","data":}`, wire.CodeBadRequest},
		{`{"id":"e","type":"send","to":"b","data":1,"id":7}`, wire.CodeBadRequest},
	} {
		a.send(tc.msg)
		e := a.expectErr(tc.code)
		if i < 7 && e["id"] != "e" {
			t.Fatalf("case %d: %v without id", i, e)
		}
		b.none(0)
		a.send(fmt.Sprintf(`{"type":"send","to":"b","data":%d,"id":"ok"}`, i))
		if ack := a.expect("ack"); ack["delivered"] != 1.0 {
			t.Fatalf("case %d: ack %v", i, ack)
		}
		if m := b.expectDelivery("to", "b", "a"); m["data"] != float64(i) {
			t.Fatalf("case %d: %v", i, m)
		}
	}
}
