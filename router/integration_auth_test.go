package router

import (
	"net/http"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// PROTOCOL.md section 2 and section 3 row `auth`: token on the query.
func TestIntegrationAuthQueryToken(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-q"})
	c := g.connect(dialOpts{query: token(t, auth.Claims{Sub: "alice"})})
	ok := c.expect("auth:ok") // the first message the gateway sends
	if ok["user"] != "alice" || ok["instance"] != "inst-q" {
		t.Fatalf("auth:ok %v", ok)
	}
	if s, _ := ok["conn"].(string); s == "" {
		t.Fatalf("auth:ok without conn: %v", ok)
	}
	c.alive()
	c.join("lobby")
}

// Token in Authorization: Bearer on the upgrade request.
func TestIntegrationAuthBearerHeader(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-h"})
	c := g.connect(dialOpts{bearer: token(t, auth.Claims{Sub: "bob"})})
	ok := c.expect("auth:ok")
	if ok["user"] != "bob" || ok["instance"] != "inst-h" || ok["conn"] == "" {
		t.Fatalf("auth:ok %v", ok)
	}
	c.alive()
	// Two connections get different conn ids.
	d := g.connect(dialOpts{bearer: token(t, auth.Claims{Sub: "bob"})})
	if ok2 := d.expect("auth:ok"); ok2["conn"] == ok["conn"] {
		t.Fatalf("two connections share conn id %v", ok["conn"])
	}
}

// Token as the first message; nothing but auth and ping before it.
func TestIntegrationAuthFirstMessage(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-m"})
	other := g.user("other")
	other.join("lobby")

	c := g.connect(dialOpts{})
	c.none(quiet) // no auth:ok without a token
	c.alive()     // ping is allowed before auth
	for _, msg := range []string{
		`{"type":"join","room":"lobby","id":"u1"}`,
		`{"type":"leave","room":"lobby","id":"u1"}`,
		`{"type":"message","room":"lobby","data":1,"id":"u1"}`,
		`{"type":"send","to":"other","data":1,"id":"u1"}`,
		`{"type":"subscribe","channel":"news","id":"u1"}`,
		`{"type":"unsubscribe","channel":"news","id":"u1"}`,
		`{"type":"publish","channel":"news","data":1,"id":"u1"}`,
		`{"type":"presence","room":"lobby","id":"u1"}`,
		`{"type":"resume","room":"lobby","since":1,"id":"u1"}`,
	} {
		c.send(msg)
		if e := c.expectErr(wire.CodeUnauthorized); e["id"] != "u1" {
			t.Fatalf("%s: error %v without the client id", msg, e)
		}
	}
	c.alive()
	c.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "carol"}), "id": "a1"})
	ok := c.expect("auth:ok")
	if ok["user"] != "carol" || ok["instance"] != "inst-m" || ok["id"] != "a1" || ok["conn"] == "" {
		t.Fatalf("auth:ok %v", ok)
	}
	c.join("lobby")
	c.send(`{"type":"message","room":"lobby","data":"after auth"}`)
	other.expectDelivery("room", "lobby", "carol")

	// A second auth on an authenticated connection is a bad request, not a close.
	c.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "mallory"}), "id": "a2"})
	if e := c.expectErr(wire.CodeBadRequest); e["id"] != "a2" {
		t.Fatalf("second auth: %v", e)
	}
	c.send(`{"type":"message","room":"lobby","data":"still carol"}`)
	other.expectDelivery("room", "lobby", "carol")
}

// Bad auth messages that are not bad tokens: bad_request, connection stays
// unauthenticated and can still authenticate.
func TestIntegrationAuthBadMessage(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	c := g.connect(dialOpts{})
	for _, msg := range []string{
		`{"type":"auth","id":"x"}`,               // missing token
		`{"type":"auth","token":"","id":"x"}`,    // empty token
		`{"type":"auth","token":12345,"id":"x"}`, // wrong type
		`{"type":"auth","token":["a"],"id":"x"}`, // wrong type
		`{"type":"auth","token":"abc"`,           // malformed JSON
		`{"type":"auth","token":"abc"} trailing`, // trailing garbage
		`["auth"]`,                               // not an object
		`{"type":7}`,                             // type not a string
		`{"type":"bogus","id":"x"}`,              // unknown type
	} {
		c.send(msg)
		c.expectErr(wire.CodeBadRequest)
		c.alive()
	}
	c.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "dave"})})
	c.expect("auth:ok")
	c.join("lobby")
}

// A bad token in an auth message: auth:fail {reason} then close 4501.
func TestIntegrationAuthFailCloses4501(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	bystander := g.user("bystander")
	bystander.join("lobby")
	peer := g.user("peer")
	peer.join("lobby")

	expired, err := auth.MintHS256(testSecret, auth.Claims{Sub: "late", Exp: time.Now().Add(-time.Hour)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := auth.MintHS256([]byte("another-secret"), auth.Claims{Sub: "eve"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"garbage": "not.a.jwt", "expired": expired, "wrong key": wrongKey} {
		c := g.connect(dialOpts{})
		c.send(map[string]any{"type": "auth", "token": tok})
		m := c.expect("auth:fail")
		if r, _ := m["reason"].(string); r == "" {
			t.Fatalf("%s: auth:fail without reason: %v", name, m)
		}
		c.expectClose(4501)
		// Other connections keep working.
		bystander.alive()
		peer.send(`{"type":"message","room":"lobby","data":"` + name + `"}`)
		if d := bystander.expectDelivery("room", "lobby", "peer"); d["data"] != name {
			t.Fatalf("%s: delivery %v", name, d)
		}
	}
	if s := g.routerStats(); s.AuthFailures != 3 {
		t.Fatalf("AuthFailures = %d, want 3", s.AuthFailures)
	}
	if s := g.engineStats(); s.CloseCount(4501) != 3 {
		t.Fatalf("4501 closes = %d, want 3", s.CloseCount(4501))
	}
}

// A bad token on the upgrade (query or Authorization header) gets HTTP 401.
func TestIntegrationAuthUpgrade401(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	good := g.user("good")
	expired, err := auth.MintHS256(testSecret, auth.Claims{Sub: "late", Exp: time.Now().Add(-time.Minute)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := auth.MintHS256([]byte("another-secret"), auth.Claims{Sub: "eve"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	noExp, err := auth.MintHS256(testSecret, auth.Claims{Sub: "forever"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		o    dialOpts
	}{
		{"query garbage", dialOpts{query: "garbage"}},
		{"query expired", dialOpts{query: expired}},
		{"query wrong key", dialOpts{query: wrongKey}},
		{"query without exp", dialOpts{query: noExp}},
		{"bearer garbage", dialOpts{bearer: "garbage"}},
		{"bearer expired", dialOpts{bearer: expired}},
		{"bearer wrong key", dialOpts{bearer: wrongKey}},
	}
	for _, tc := range cases {
		conn, resp, err := g.tryDial(tc.o)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: upgrade accepted", tc.name)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %v (response %v), want HTTP 401", tc.name, err, resp)
		}
	}
	good.alive()
	if s := g.engineStats(); s.RefusalCount(401) != uint64(len(cases)) {
		t.Fatalf("401 refusals = %d, want %d", s.RefusalCount(401), len(cases))
	}
	// And a good token still upgrades.
	g.user("good")
}

// No auth within Options.AuthTimeout: close 4008. Authenticated
// connections (by upgrade or by message) are not affected.
func TestIntegrationAuthTimeout4008(t *testing.T) {
	g := startGateway(t, engine.Options{TickInterval: 10 * time.Millisecond}, Options{AuthTimeout: 200 * time.Millisecond})
	byToken := g.user("early")
	byMessage := g.connect(dialOpts{})
	byMessage.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "prompt"})})
	byMessage.expect("auth:ok")

	start := time.Now()
	slow := g.connect(dialOpts{})
	slow.send(`{"type":"ping"}`) // a ping does not count as authentication
	slow.expectClose(4008)       // (expectClose skips the pong)
	if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
		t.Fatalf("4008 after %v, want about 200ms", el)
	}
	time.Sleep(100 * time.Millisecond) // well past the timeout for the others too
	byToken.alive()
	byMessage.alive()
	if s := g.engineStats(); s.CloseCount(4008) != 1 {
		t.Fatalf("4008 closes = %d, want 1", s.CloseCount(4008))
	}
}

// The user id comes from the token only: from/user fields a client sends
// are ignored in every kind of delivery.
func TestIntegrationAuthFromIgnored(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	alice := g.userWith(auth.Claims{Sub: "alice", Pub: []string{"news"}}, dialOpts{})
	bob := g.user("bob")
	alice.join("lobby")
	bob.join("lobby")
	bob.subscribe("news")

	alice.send(`{"type":"message","room":"lobby","from":"mallory","user":"mallory","data":{"from":"inner"}}`)
	m := bob.expectDelivery("room", "lobby", "alice")
	if d, _ := m["data"].(map[string]any); d["from"] != "inner" {
		t.Fatalf("data changed: %v", m)
	}
	alice.send(`{"type":"send","to":"bob","from":"mallory","user":"mallory","data":1}`)
	bob.expectDelivery("to", "bob", "alice")
	alice.send(`{"type":"publish","channel":"news","from":"mallory","data":2}`)
	bob.expectDelivery("channel", "news", "alice")
	bob.none(quiet)
}
