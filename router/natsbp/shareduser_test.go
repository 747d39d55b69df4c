package natsbp

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// With SharedUserInterest an instance holds one wildcard subscription for
// all users instead of one per online user, and delivery stays exact: a
// message for a user reaches each of that user's connections on every
// instance once, and nobody else.
func TestSharedUserInterestExactDelivery(t *testing.T) {
	ns := startNATS(t, 0)
	opts := Options{URLs: []string{ns.ClientURL()}, SharedUserInterest: true}
	a := startInstance(t, "a", opts)
	b := startInstance(t, "b", opts)
	alice, bob := a.dial("alice"), b.dial("bob")
	carolA, carolB := a.dial("carol"), b.dial("carol")
	// gw.all and gw.user.*, however many users are online.
	a.waitSubscribed(2)
	b.waitSubscribed(2)
	if n := a.bp.Stats().Subscriptions; n != 2 {
		t.Fatalf("instance a has %d subscriptions with 2 users online, want 2 (gw.all, gw.user.*)", n)
	}

	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for subj, payload := range map[string]string{
		"gw.user.bob":    `{"data":"just bob"}`,
		"gw.user.carol":  `{"data":"both carols"}`,
		"gw.user.nobody": `{"data":"nobody is online"}`,
	} {
		if err := svc.Publish(subj, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m := bob.expect("message"); m["to"] != "bob" || m["data"] != "just bob" {
		t.Fatalf("bob got %v", m)
	}
	for _, c := range []*client{carolA, carolB} {
		if m := c.expect("message"); m["to"] != "carol" || m["data"] != "both carols" {
			t.Fatalf("carol got %v", m)
		}
	}

	// A client's send across instances: the ack says remote, the one
	// receiver gets it once.
	alice.send(`{"type":"send","to":"bob","data":"psst","id":"s1"}`)
	if ack := alice.expect("ack"); ack["delivered"] != float64(0) || ack["remote"] != true {
		t.Fatalf("send ack %v, want delivered 0 and remote", ack)
	}
	if m := bob.expect("message"); m["from"] != "alice" || m["data"] != "psst" {
		t.Fatalf("bob got %v", m)
	}
	// A user who comes online is reachable as soon as auth:ok arrives.
	dave := b.dial("dave")
	if err := svc.Publish("gw.user.dave", []byte(`{"data":"welcome"}`)); err != nil {
		t.Fatal(err)
	}
	if m := dave.expect("message"); m["data"] != "welcome" {
		t.Fatalf("dave got %v", m)
	}
	if st := a.bp.Stats(); st.DecodeErrors != 0 {
		t.Fatalf("decode errors on a: %+v", st)
	}
	for _, c := range []*client{alice, bob, carolA, carolB, dave} {
		c.quiet()
	}
}
