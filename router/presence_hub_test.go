package router

import (
	"reflect"
	"testing"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Presence across instances on a LocalHub (PresenceTransport), and history
// off there: resume is unavailable.
func TestPresenceLocalHub(t *testing.T) {
	ga, gb := twoInstances(t, Options{})
	alice, bob, carol := ga.user("alice"), gb.user("bob"), gb.user("carol")
	alice.join("lobby")
	bob.join("lobby")
	for _, c := range []*tclient{alice, bob, carol} {
		eventually(t, "presence of alice and bob", func() bool { // once the joins reached both trackers
			c.send(`{"type":"presence","room":"lobby","id":"p"}`)
			m := c.expect("presence")
			return reflect.DeepEqual(m["users"], []any{"alice", "bob"}) && m["id"] == "p"
		})
	}
	alice.send(`{"type":"resume","room":"lobby","since":3,"id":"r"}`)
	if m := alice.expectErr(wire.CodeUnavailable); m["id"] != "r" {
		t.Fatalf("resume on a LocalHub: %v", m)
	}
}

// Replicated presence on a LocalHub: events once per user across both
// instances, none for a second device or a reconnect within the grace,
// and a member that leaves the hub takes its users with it at once.
func TestPresenceEventsLocalHub(t *testing.T) {
	ga, gb := twoInstances(t, Options{PresenceEvents: true, PresenceGrace: 2 * time.Second})
	wa, wb := ga.user("wa"), gb.user("wb")
	wa.join("room")
	// wb joins once the room's presence includes wa as b sees it: a's
	// tracking of the room has begun. A join on b racing the first member's
	// join on a may be taken as present before (docs/architecture.md,
	// "Known windows"), and then wa hears of wb only from presence.
	eventually(t, "b sees wa in the room", func() bool {
		wb.send(`{"type":"presence","room":"room"}`)
		return reflect.DeepEqual(wb.expect("presence")["users"], []any{"wa"})
	})
	wb.join("room")
	if m := wa.expect("user:joined"); m["user"] != "wb" {
		t.Fatalf("%v, want user:joined wb", m)
	}
	event := func(typ, user string) {
		t.Helper()
		for _, w := range []*tclient{wa, wb} {
			if m := w.expect(typ); m["room"] != "room" || m["user"] != user {
				t.Fatalf("%s: %v, want %s %s", w, m, typ, user)
			}
		}
	}
	u1 := ga.user("u")
	u1.join("room")
	event("user:joined", "u")
	u2 := gb.user("u") // a second device on the other instance: nothing
	u2.join("room")
	u1.send(`{"type":"leave","room":"room"}`)
	u1.expect("left")
	u2.close() // ...and back on a within the grace: nothing either
	u3 := ga.user("u")
	u3.join("room")
	eventually(t, "both see u, wa and wb", func() bool {
		for _, w := range []*tclient{wa, wb} {
			w.send(`{"type":"presence","room":"room"}`)
			if got := w.expect("presence")["users"]; !reflect.DeepEqual(got, []any{"u", "wa", "wb"}) {
				return false
			}
		}
		return true
	})
	u3.send(`{"type":"leave","room":"room"}`)
	u3.expect("left")
	event("user:left", "u") // after the grace, the only event since the join
	// b leaves the hub (its connections stay): a drops its users at once,
	// without the grace.
	start := time.Now()
	if err := gb.router.Close(); err != nil {
		t.Fatal(err)
	}
	if m := wa.expect("user:left"); m["user"] != "wb" {
		t.Fatalf("%v, want user:left wb", m)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("b's users left after %v", d)
	}
	if s := ga.router.PresenceStats(); s.InstancesLost != 1 {
		t.Fatalf("stats %+v, want one instance lost", s)
	}
	wa.none(quiet)
}

// presence is capped by PresenceMaxUsers, with truncated: true.
func TestPresenceTruncatedLocalHub(t *testing.T) {
	ga, gb := twoInstances(t, Options{PresenceMaxUsers: 2})
	for _, c := range []*tclient{ga.user("c"), gb.user("a"), ga.user("b")} {
		c.join("r")
	}
	asker := gb.user("z")
	eventually(t, "three users, capped at two", func() bool {
		asker.send(`{"type":"presence","room":"r","id":"p"}`)
		m := asker.expect("presence")
		return reflect.DeepEqual(m["users"], []any{"a", "b"}) && m["truncated"] == true
	})
	standalone := startGateway(t, engine.Options{}, Options{PresenceMaxUsers: 1})
	x, y := standalone.user("x"), standalone.user("y")
	x.join("r")
	y.join("r")
	x.send(`{"type":"presence","room":"r"}`)
	if m := x.expect("presence"); !reflect.DeepEqual(m["users"], []any{"x"}) || m["truncated"] != true {
		t.Fatalf("standalone capped presence %v", m)
	}
}

func TestMergeUsers(t *testing.T) {
	got := MergeUsers([]string{"b", "a"}, nil, []string{"c", "a"}, []string{"b"})
	if !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("MergeUsers %v", got)
	}
	if got := MergeUsers(); len(got) != 0 {
		t.Fatalf("MergeUsers() %v", got)
	}
}
