package natsbp

import (
	"testing"
	"time"

	"github.com/wsgate/wsgate/router"
)

// BenchmarkPresenceQuery is a client's `presence` round trip (send to
// answer) for a room with members on two instances over NATS: before the
// replicated tracker every query waited the -presence-window (100ms).
func BenchmarkPresenceQuery(b *testing.B) {
	ns := startNATS(b, 0)
	o := Options{URLs: []string{ns.ClientURL()}}
	noLimit := func(ro *router.Options) { ro.RateMsgs = -1 } // a query per round trip, far above 100/s
	a := startInstanceWith(b, "a", o, 2, noLimit)
	other := startInstanceWith(b, "b", o, 2, noLimit)
	alice, bob := a.dial("alice"), other.dial("bob")
	alice.join("lobby")
	bob.join("lobby")
	ask := func() int {
		alice.send(`{"type":"presence","room":"lobby","id":"p"}`)
		for {
			m := alice.next(5 * time.Second)
			if m == nil {
				b.Fatal("no presence answer")
			}
			if m["type"] == "presence" {
				return len(m["users"].([]any))
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for ask() != 2 { // bob's join has reached a
		if time.Now().After(deadline) {
			b.Fatal("presence never listed both")
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if ask() != 2 {
			b.Fatal("presence lost a user")
		}
	}
}
