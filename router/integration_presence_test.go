package router

import (
	"reflect"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Section 3 row presence: the users of a room (each once, sorted).
func TestIntegrationPresenceList(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	a1, a2, b := g.user("alice"), g.user("alice"), g.user("bob")
	limited := g.userWith(auth.Claims{Sub: "carol", Rooms: []string{"open"}}, dialOpts{})
	for _, c := range []*tclient{a1, a2, b} {
		c.join("open")
	}
	b.join("private")
	presence := func(c *tclient, room string, want ...string) {
		t.Helper()
		c.send(`{"type":"presence","room":"` + room + `","id":"p"}`)
		m := c.expect("presence")
		got, _ := m["users"].([]any)
		w := []any{}
		for _, u := range want {
			w = append(w, u)
		}
		if m["room"] != room || m["id"] != "p" || !reflect.DeepEqual(append([]any{}, got...), w) {
			t.Fatalf("presence %v, want users %v", m, want)
		}
	}
	presence(a1, "open", "alice", "bob")
	presence(limited, "open", "alice", "bob") // may join, so may look, without joining
	presence(a1, "empty")
	a2.send(`{"type":"leave","room":"open"}`)
	a2.expect("left")
	presence(b, "open", "alice", "bob") // a1 is still there
	a1.send(`{"type":"leave","room":"open"}`)
	a1.expect("left")
	presence(b, "open", "bob")
	b.close()
	eventually(t, "bob's close to clear presence", func() bool {
		a1.send(`{"type":"presence","room":"open"}`)
		return len(a1.expect("presence")["users"].([]any)) == 0
	})

	// Bad input.
	for _, tc := range []struct{ msg, code string }{
		{`{"id":"e","type":"presence"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"presence","room":1}`, wire.CodeBadRequest},
		{`{"id":"e","type":"presence","room":"no way"}`, wire.CodeBadRequest},
		{`{"id":"e","type":"presence","room":"private"}`, wire.CodeForbidden},
	} {
		limited.send(tc.msg)
		if e := limited.expectErr(tc.code); e["id"] != "e" {
			t.Fatalf("%s: %v", tc.msg, e)
		}
		limited.alive()
	}
	presence(limited, "open")
}

// Presence events with Options.PresenceEvents: user:joined / user:left once
// per user (not per device), also when a connection just goes away.
func TestIntegrationPresenceEvents(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{PresenceEvents: true})
	watcher := g.user("watcher")
	watcher.join("room")
	mpWatcher := g.user("mpw", wire.SubprotocolMsgpack)
	mpWatcher.join("room")
	watcher.expect("user:joined") // mpw's own join
	event := func(typ, user string) {
		t.Helper()
		for _, c := range []*tclient{watcher, mpWatcher} {
			m := c.expect(typ)
			if m["room"] != "room" || m["user"] != user {
				t.Fatalf("%s: %v, want %s %s", c, m, typ, user)
			}
		}
	}
	b1, b2 := g.user("bob"), g.user("bob")
	b1.join("room")
	event("user:joined", "bob")
	b1.none(quiet)  // not to the joining connection itself
	b2.join("room") // bob's second device: bob was already there
	watcher.alive()
	b2.send(`{"type":"leave","room":"room"}`)
	b2.expect("left")
	watcher.alive() // bob is still in the room through b1
	b1.send(`{"type":"leave","room":"room"}`)
	b1.expect("left")
	event("user:left", "bob")
	// A connection that goes away leaves its rooms.
	b2.join("room")
	event("user:joined", "bob")
	b2.close()
	event("user:left", "bob")
	watcher.none(quiet)
	// Without the option there are no events.
	g2 := startGateway(t, engine.Options{}, Options{})
	w2, c2 := g2.user("w"), g2.user("c")
	w2.join("r")
	c2.join("r")
	c2.close()
	w2.none(quiet)
}

// resume without history answers error unavailable (section 6).
func TestIntegrationResumeUnavailable(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	c := g.user("alice")
	c.join("r")
	c.send(`{"type":"resume","room":"r","since":41,"id":"r1"}`)
	if e := c.expectErr(wire.CodeUnavailable); e["id"] != "r1" {
		t.Fatalf("%v", e)
	}
	for _, msg := range []string{
		`{"id":"e","type":"resume","room":"r"}`,
		`{"id":"e","type":"resume","room":"r","since":-1}`,
		`{"id":"e","type":"resume","room":"r","since":"5"}`,
		`{"id":"e","type":"resume","room":"r","since":1.5}`,
		`{"id":"e","type":"resume","since":1}`,
	} {
		c.send(msg)
		c.expectErr(wire.CodeBadRequest)
		c.alive()
	}
	c.send(`{"type":"resume","room":"r","since":0}`)
	c.expectErr(wire.CodeUnavailable)
	c.alive()
}
