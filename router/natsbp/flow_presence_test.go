package natsbp

import (
	"reflect"
	"testing"
)

// Presence messages have their own subjects: neither the
// question nor the answers (nor NATS's no-responders status, when no other
// instance is up) may be counted as a backplane decode error.
func TestPresenceQueryCountsNoDecodeErrors(t *testing.T) {
	ns := startNATS(t, 0)
	o := Options{URLs: []string{ns.ClientURL()}}
	a, _ := startGW(t, "a", o)
	alice := a.dial("alice")
	alice.join("lobby")
	// Alone: nobody else answers.
	if got, _ := alice.presence("lobby"); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Fatalf("presence alone: %v", got)
	}
	b, _ := startGW(t, "b", o)
	bob := b.dial("bob")
	bob.join("lobby")
	for _, c := range []*client{alice, bob} {
		c.eventuallyPresence("lobby", "alice", "bob")
		if got, _ := c.presence("nobody"); len(got) != 0 {
			t.Fatalf("presence of an empty room: %v", got)
		}
	}
	for _, in := range []*instance{a, b} {
		if err := in.bp.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		if s := in.bp.Stats(); s.DecodeErrors != 0 || in.bp.PresenceStats().DecodeErrors != 0 {
			t.Fatalf("presence queries counted %d decode errors: %+v %+v", s.DecodeErrors, s, in.bp.PresenceStats())
		}
	}
}
