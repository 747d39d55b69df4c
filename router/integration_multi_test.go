package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// twoInstances runs routers "a" and "b", each with its own engine, on one LocalHub.
func twoInstances(t *testing.T, ro Options) (a, b *gateway) {
	hub := NewLocalHub()
	ra, rb := ro, ro
	ra.Backplane, ra.InstanceID = hub.Join(), "a"
	rb.Backplane, rb.InstanceID = hub.Join(), "b"
	return startGateway(t, engine.Options{}, ra), startGateway(t, engine.Options{}, rb)
}

// A room message from A reaches the members on A and on B exactly once each.
func TestIntegrationMultiRoomExactlyOnce(t *testing.T) {
	ga, gb := twoInstances(t, Options{RateMsgs: -1})
	a1, a2 := ga.user("a1"), ga.user("a2")
	b1, b2 := gb.user("b1"), gb.user("b2")
	mpB := gb.user("mpb", wire.SubprotocolMsgpack)
	members := []*tclient{a1, a2, b1, b2, mpB}
	for _, c := range members {
		c.join("global")
	}
	const n = 50
	for i := range n {
		a1.send(fmt.Sprintf(`{"type":"message","room":"global","data":%d}`, i))
		b1.send(fmt.Sprintf(`{"type":"message","room":"global","data":%d}`, 1000+i))
	}
	ids := map[string]int{}
	for _, c := range members {
		fromA, fromB := 0, 0
		want := 2 * n
		if c == a1 || c == b1 {
			want = n // never their own
		}
		for range want {
			m := c.expect("message")
			checkDelivery(t, m, "room", "global", m["from"].(string))
			id := m["id"].(string)
			ids[id]++
			switch d := int(m["data"].(float64)); {
			case m["from"] == "a1" && d == fromA && strings.HasPrefix(id, "a-"):
				fromA++
			case m["from"] == "b1" && d == 1000+fromB && strings.HasPrefix(id, "b-"):
				fromB++
			default:
				t.Fatalf("%s: unexpected or out-of-order %v", c.user, m)
			}
		}
	}
	for _, c := range members {
		c.none(quiet) // no duplicates arrive later
	}
	a2.send(`{"type":"message","room":"global","data":"acked","id":"m"}`)
	if ack := a2.expect("ack"); ack["id"] != "m" {
		t.Fatalf("ack %v", ack)
	}
	for _, c := range []*tclient{a1, b1, b2, mpB} {
		if m := c.expectDelivery("room", "global", "a2"); m["data"] != "acked" {
			t.Fatalf("%v", m)
		}
	}
	if len(ids) != 2*n {
		t.Fatalf("%d distinct ids for %d messages", len(ids), 2*n)
	}
	for id, k := range ids {
		if want := 4; k != want {
			t.Fatalf("id %s delivered %d times, want %d (once per other member)", id, k, want)
		}
	}
	// A room only on B: nothing crosses to A's non-members.
	b2.join("only-b")
	b1.join("only-b")
	b1.send(`{"type":"message","room":"only-b","data":"local"}`)
	b2.expectDelivery("room", "only-b", "b1")
	a2.none(quiet)
}

// send to a user on B from A; a user with devices on both instances.
func TestIntegrationMultiSend(t *testing.T) {
	ga, gb := twoInstances(t, Options{})
	alice := ga.user("alice")
	bobB := gb.user("bob")
	alice.send(`{"type":"send","to":"bob","data":"hi","id":"s1"}`)
	ack := alice.expect("ack")
	if ack["delivered"] != 0.0 || ack["remote"] != true || ack["id"] != "s1" {
		t.Fatalf("ack %v: want delivered 0 remote true", ack)
	}
	m := bobB.expectDelivery("to", "bob", "alice")
	if !strings.HasPrefix(m["id"].(string), "a-") {
		t.Fatalf("id %v not minted by instance a", m["id"])
	}
	bobA := ga.user("bob")
	alice.send(`{"type":"send","to":"bob","data":"both","id":"s2"}`)
	if ack := alice.expect("ack"); ack["delivered"] != 1.0 || ack["remote"] != true {
		t.Fatalf("ack %v: want delivered 1 remote true", ack)
	}
	bobA.expectDelivery("to", "bob", "alice")
	bobB.expectDelivery("to", "bob", "alice")
	bobA.none(quiet)
	bobB.none(0)
	// Back from B to alice on A.
	bobB.send(`{"type":"send","to":"alice","data":"back"}`)
	alice.expectDelivery("to", "alice", "bob")
	// Offline everywhere: nothing, and no error.
	alice.send(`{"type":"send","to":"nobody","data":1,"id":"s3"}`)
	if ack := alice.expect("ack"); ack["delivered"] != 0.0 {
		t.Fatalf("ack %v", ack)
	}
}

// channel publish across instances, with filters evaluated on the receiving instance.
func TestIntegrationMultiChannel(t *testing.T) {
	ga, gb := twoInstances(t, Options{})
	pub := ga.userWith(auth.Claims{Sub: "svc", Pub: []string{"alerts.*"}}, dialOpts{})
	eu := gb.userWith(auth.Claims{Sub: "eu", Tags: map[string]string{"region": "eu"}}, dialOpts{protocols: []string{wire.SubprotocolMsgpack}})
	us := gb.userWith(auth.Claims{Sub: "us", Tags: map[string]string{"region": "us"}}, dialOpts{})
	local := ga.user("local")
	for _, c := range []*tclient{eu, us, local} {
		c.subscribe("alerts.fire")
	}
	pub.send(`{"type":"publish","channel":"alerts.fire","data":{"level":3},"id":"p"}`)
	pub.expect("ack")
	for _, c := range []*tclient{eu, us, local} {
		if m := c.expectDelivery("channel", "alerts.fire", "svc"); m["data"].(map[string]any)["level"] != 3.0 {
			t.Fatalf("%v", m)
		}
	}
	pub.send(`{"type":"publish","channel":"alerts.fire","data":"eu","filter":{"tag":"region","in":["eu"]}}`)
	pub.send(`{"type":"publish","channel":"alerts.fire","data":"end"}`)
	if m := eu.expectDelivery("channel", "alerts.fire", "svc"); m["data"] != "eu" {
		t.Fatalf("%v", m)
	}
	for _, c := range []*tclient{eu, us, local} {
		if m := c.expectDelivery("channel", "alerts.fire", "svc"); m["data"] != "end" {
			t.Fatalf("%s: %v", c.user, m)
		}
		c.none(quiet)
	}
	// After unsubscribing on B, B loses interest and gets nothing.
	for _, c := range []*tclient{eu, us} {
		c.send(`{"type":"unsubscribe","channel":"alerts.fire"}`)
		c.expect("unsubscribed")
	}
	pub.send(`{"type":"publish","channel":"alerts.fire","data":"late"}`)
	local.expectDelivery("channel", "alerts.fire", "svc")
	eu.none(quiet)
	us.none(0)
}

// presence across instances (section 3: "presence {room, users} across
// instances") is not implemented: the router answers from its own registry.
func TestIntegrationMultiPresence(t *testing.T) {
	t.Skip("not implemented: presence lists only this instance's users (Backplane has no request/reply to ask other instances)")
}
