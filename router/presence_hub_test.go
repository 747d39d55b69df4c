package router

import (
	"reflect"
	"testing"

	"github.com/wsgate/wsgate/wire"
)

// Presence across instances on a LocalHub (PresenceQuerier), and history
// off there: resume is unavailable.
func TestPresenceLocalHub(t *testing.T) {
	ga, gb := twoInstances(t, Options{})
	alice, bob, carol := ga.user("alice"), gb.user("bob"), gb.user("carol")
	alice.join("lobby")
	bob.join("lobby")
	for _, c := range []*tclient{alice, bob, carol} {
		c.send(`{"type":"presence","room":"lobby","id":"p"}`)
		m := c.expect("presence")
		if got := m["users"]; !reflect.DeepEqual(got, []any{"alice", "bob"}) || m["id"] != "p" {
			t.Fatalf("presence %v, want alice and bob", m)
		}
	}
	alice.send(`{"type":"resume","room":"lobby","since":3,"id":"r"}`)
	if m := alice.expectErr(wire.CodeUnavailable); m["id"] != "r" {
		t.Fatalf("resume on a LocalHub: %v", m)
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
