package natsbp

import (
	"reflect"
	"testing"
	"time"
)

func (c *client) presence(room string) ([]string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.send(`{"type":"presence","room":"` + room + `","id":"p"}`)
	m := c.expect("presence")
	took := time.Since(start)
	if m["room"] != room || m["id"] != "p" {
		c.t.Fatalf("presence %v", m)
	}
	var users []string
	for _, u := range m["users"].([]any) {
		users = append(users, u.(string))
	}
	return users, took
}

func TestPresenceAcrossInstances(t *testing.T) {
	ns := startNATS(t, 0)
	// The window is long enough that a loaded machine's answers make it:
	// this test is about what presence answers, not how fast.
	const window = time.Second
	o := Options{URLs: []string{ns.ClientURL()}, PresenceWindow: window}
	a, _ := startGW(t, "a", o)
	b, stopB := startGW(t, "b", o)
	c, _ := startGW(t, "c", o)
	alice, carol := a.dial("alice"), a.dial("carol")
	bob, dave := b.dial("bob"), b.dial("dave")
	erin := c.dial("erin")
	for _, cl := range []*client{alice, bob, dave, erin} {
		cl.join("lobby")
	}
	bob2 := c.dial("bob") // the same user on two instances counts once
	bob2.join("lobby")

	want := []string{"alice", "bob", "dave", "erin"}
	for _, asker := range []*client{carol, bob, erin} {
		got, took := asker.presence("lobby")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("presence %v, want %v", got, want)
		}
		if took > window+10*time.Second {
			t.Fatalf("presence took %v", took)
		}
	}
	if got, _ := carol.presence("empty"); len(got) != 0 {
		t.Fatalf("empty room: %v", got)
	}

	// c loses NATS (a dead instance, as the others see it): erin and the
	// second bob drop out of the very next query.
	c.bp.Conn().Close()
	if got, _ := carol.presence("lobby"); !reflect.DeepEqual(got, []string{"alice", "bob", "dave"}) {
		t.Fatalf("after c died: %v", got)
	}
	// b stops: bob and dave are gone at most one window later.
	stopB()
	gone := time.Now()
	for {
		got, _ := carol.presence("lobby")
		if reflect.DeepEqual(got, []string{"alice"}) {
			break
		}
		if time.Since(gone) > window+10*time.Second {
			t.Fatalf("b's users still present %v after %v", got, time.Since(gone))
		}
	}
	// Without history, resume is unavailable.
	alice.send(`{"type":"resume","room":"lobby","since":1,"id":"r"}`)
	if m := alice.expect("error"); m["code"] != "unavailable" || m["id"] != "r" {
		t.Fatalf("resume without history: %v", m)
	}
	s := a.bp.PresenceStats()
	if s.Queries == 0 || s.Replies == 0 {
		t.Fatalf("presence stats %+v", s)
	}
}

func TestPresenceNATSDown(t *testing.T) {
	ns := startNATS(t, 0)
	a, _ := startGW(t, "a", Options{URLs: []string{ns.ClientURL()}})
	alice := a.dial("alice")
	alice.join("r")
	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for a.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("still ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	alice.send(`{"type":"presence","room":"r","id":"p"}`)
	if m := alice.expect("error"); m["code"] != "unavailable" || m["id"] != "p" {
		t.Fatalf("presence with NATS down: %v, want error unavailable", m)
	}
}
