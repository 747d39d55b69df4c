package router

import "testing"

// TestIntegrationInterestIsLevelTriggered: the registry changes under the
// address's lock, but the interest notification comes after it, so
// notifications from two loops can arrive in the other order. Here the
// late one (a leave on another loop that raced with this login or join)
// arrives after the registry already counts the member again: the
// backplane must follow the registry, not the last notification, and keep
// delivering.
func TestIntegrationInterestIsLevelTriggered(t *testing.T) {
	ga, gb := twoInstances(t, Options{RateMsgs: -1})
	u, s := ga.user("u"), gb.user("s")
	u.join("r")
	s.join("r")

	ga.router.opts.Backplane.Interest(KindUser, "u")
	ga.router.opts.Backplane.Interest(KindRoom, "r")

	s.send(`{"type":"send","to":"u","data":"direct","id":"s1"}`)
	s.expect("ack")
	u.expectDelivery("to", "u", "s")
	s.send(`{"type":"message","room":"r","data":"room","id":"s2"}`)
	s.expect("ack")
	u.expectDelivery("room", "r", "s")
	u.none(quiet)
}
