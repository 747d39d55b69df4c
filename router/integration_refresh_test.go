package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// PROTOCOL.md section 9, token lifetime: refresh, token_expired and the 4011
// close, over real sockets in gw.json and gw.msgpack.

// refreshTick is the timing-wheel tick of the expiry tests: the bound on how
// late a deadline may fire, besides the machine's own delays.
const refreshTick = 50 * time.Millisecond

// loadSlack is added to the upper bounds only: on a loaded shared machine a
// loop or the test's reader may run late. The lower bounds are exact.
const loadSlack = 750 * time.Millisecond

// codecsUnderTest are the dial protocols of the two client encodings.
var codecsUnderTest = []struct {
	name      string
	protocols []string
}{
	{"json", nil},
	{"msgpack", []string{wire.SubprotocolMsgpack}},
}

// mintExp mints a test token with exp at the given UNIX second.
func mintExp(t testing.TB, c auth.Claims, exp int64) string {
	t.Helper()
	c.Exp = time.Unix(exp, 0)
	tok, err := auth.MintHS256(testSecret, c, 0)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// shortExp is an exp one to two seconds from now: whole seconds, as in a JWT.
func shortExp() int64 { return time.Now().Unix() + 2 }

// num reads a JSON number field as an int64.
func num(t testing.TB, m map[string]any, key string) int64 {
	t.Helper()
	f, ok := m[key].(float64)
	if !ok {
		t.Fatalf("%v: no number %q", m, key)
	}
	return int64(f)
}

// expectTimed reads the next message, checks its type, and returns it with
// the time the reader received it.
func (c *tclient) expectTimed(typ string) (map[string]any, time.Time) {
	c.t.Helper()
	m, ok := c.next(2 * waitFor)
	if !ok {
		c.t.Fatalf("%s: no %s within %v (reader: %v)", c, typ, 2*waitFor, c.readErr())
	}
	d := c.check(m)
	if d["type"] != typ {
		c.t.Fatalf("%s: got %v, want type %q", c, d, typ)
	}
	return d, m.at
}

// within fails unless lo <= at <= hi.
func within(t testing.TB, what string, at, lo, hi time.Time) {
	t.Helper()
	if at.Before(lo) {
		t.Fatalf("%s at %v: %v before the earliest allowed %v", what, at.Format(time.StampMilli), lo.Sub(at), lo.Format(time.StampMilli))
	}
	if at.After(hi) {
		t.Fatalf("%s at %v: %v after the latest allowed %v", what, at.Format(time.StampMilli), at.Sub(hi), hi.Format(time.StampMilli))
	}
	t.Logf("%s: %v after the earliest allowed", what, at.Sub(lo))
}

// A refresh whose claims allow fewer rooms and channels leaves exactly the
// lost ones (left {reason: revoked}), then answers refreshed {exp, id}; the
// rest keeps working and the lost ones are gone from routing.
func TestIntegrationRefreshRevokes(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-r"})
			other := g.userWith(auth.Claims{Sub: "other", Pub: []string{"news.*"}}, dialOpts{})
			for _, room := range []string{"keep", "lose1", "lose2"} {
				other.join(room)
			}
			old := auth.Claims{Sub: "alice", Rooms: []string{"keep", "lose*"}, RoomsSet: true,
				SubChannels: []string{"news.*"}, SubChannelsSet: true, Pub: []string{"news.*"}}
			exp := time.Now().Unix() + 3600
			c := g.connect(dialOpts{query: mintExp(t, old, exp), protocols: cc.protocols})
			ok := c.expect("auth:ok")
			if got := num(t, ok, "exp"); got != exp {
				t.Fatalf("auth:ok exp %d, want %d", got, exp)
			}
			for _, room := range []string{"keep", "lose1", "lose2"} {
				c.join(room)
			}
			c.subscribe("news.keep")
			c.subscribe("news.lose")

			newExp := exp + 60
			fewer := auth.Claims{Sub: "alice", Rooms: []string{"keep"}, RoomsSet: true,
				SubChannels: []string{"news.keep"}, SubChannelsSet: true, Pub: []string{"news.*"}}
			c.send(map[string]any{"type": "refresh", "token": mintExp(t, fewer, newExp), "id": "r1"})
			revoked := map[string]bool{}
			for range 3 {
				m := c.expect("left")
				if m["reason"] != wire.LeftRevoked || m["id"] != nil {
					t.Fatalf("left %v: want reason revoked and no id", m)
				}
				key := fmt.Sprint("room:", m["room"])
				if m["channel"] != nil {
					key = fmt.Sprint("channel:", m["channel"])
				}
				revoked[key] = true
			}
			if want := map[string]bool{"room:lose1": true, "room:lose2": true, "channel:news.lose": true}; fmt.Sprint(revoked) != fmt.Sprint(want) {
				t.Fatalf("revoked %v, want %v", revoked, want)
			}
			m := c.expect("refreshed")
			if m["id"] != "r1" || num(t, m, "exp") != newExp {
				t.Fatalf("refreshed %v: want id r1, exp %d", m, newExp)
			}

			// Lost rooms deliver nothing more; the kept one still does (one
			// sender, so lose1 and lose2 would arrive before keep).
			other.send(`{"type":"message","room":"lose1","data":1}`)
			other.send(`{"type":"message","room":"lose2","data":2}`)
			other.send(`{"type":"message","room":"keep","data":3}`)
			c.expectDelivery("room", "keep", "other")
			other.send(`{"type":"publish","channel":"news.lose","data":4}`)
			other.send(`{"type":"publish","channel":"news.keep","data":5}`)
			c.expectDelivery("channel", "news.keep", "other")
			c.send(`{"type":"join","room":"lose1","id":"j"}`)
			c.expectErr(wire.CodeForbidden)
			c.send(`{"type":"leave","room":"lose2","id":"l"}`)
			c.expectErr(wire.CodeNotJoined)
			if st := g.routerStats(); st.RefreshOK != 1 || st.RefreshForbidden != 0 || st.RefreshInvalid != 0 {
				t.Fatalf("refresh counters %+v", st)
			}
		})
	}
}

// A refresh with another user's token is forbidden and changes nothing: the
// old claims (rooms, channels, exp) stay in force.
func TestIntegrationRefreshOtherSubForbidden(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-f"})
			other := g.user("other")
			other.join("a")
			c := g.userWith(auth.Claims{Sub: "alice", Rooms: []string{"a", "b"}, RoomsSet: true}, dialOpts{protocols: cc.protocols})
			c.join("a")
			c.send(map[string]any{"type": "refresh", "token": token(t, auth.Claims{Sub: "mallory", Rooms: []string{"z"}, RoomsSet: true}), "id": "r2"})
			if e := c.expectErr(wire.CodeForbidden); e["id"] != "r2" {
				t.Fatalf("error %v without the client id", e)
			}
			c.none(quiet) // no left: nothing was revoked
			other.send(`{"type":"message","room":"a","data":1}`)
			c.expectDelivery("room", "a", "other")
			c.join("b") // allowed by the old claims still
			c.send(`{"type":"join","room":"z","id":"j"}`)
			c.expectErr(wire.CodeForbidden) // mallory's rooms were not taken
			if st := g.routerStats(); st.RefreshForbidden != 1 || st.RefreshOK != 0 {
				t.Fatalf("refresh counters %+v", st)
			}
		})
	}
}

// A refresh that does not verify (garbage, wrong signature, expired) is an
// error and nothing more: the connection keeps its token until that token's
// own exp, and then expires as usual (token_expired, 4011).
func TestIntegrationRefreshBadTokenKeepsOldExpiry(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			const grace = 300 * time.Millisecond
			g := startGateway(t, engine.Options{TickInterval: refreshTick}, Options{InstanceID: "inst-b", TokenGrace: grace})
			exp := shortExp()
			c := g.connect(dialOpts{query: mintExp(t, auth.Claims{Sub: "alice"}, exp), protocols: cc.protocols})
			c.expect("auth:ok")
			c.join("a")
			expired, err := auth.MintHS256(testSecret, auth.Claims{Sub: "alice", Exp: time.Now().Add(-time.Hour)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			wrongKey, err := auth.MintHS256([]byte("not-the-gateway-secret-0123456789"), auth.Claims{Sub: "alice"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for i, tok := range []string{"garbage", expired, wrongKey} {
				id := fmt.Sprint("bad", i)
				c.send(map[string]any{"type": "refresh", "token": tok, "id": id})
				if e := c.expectErr(wire.CodeUnauthorized); e["id"] != id {
					t.Fatalf("error %v without the client id", e)
				}
			}
			c.send(`{"type":"refresh","id":"none"}`)
			c.expectErr(wire.CodeBadRequest) // missing token
			c.alive()
			c.join("b")
			if st := g.routerStats(); st.RefreshInvalid != 3 || st.RefreshOK != 0 {
				t.Fatalf("refresh counters %+v", st)
			}

			expAt := time.Unix(exp, 0)
			m, at := c.expectTimed("token_expired")
			within(t, "token_expired", at, expAt, expAt.Add(refreshTick+loadSlack))
			if ms := num(t, m, "close_in_ms"); ms < 0 || ms > grace.Milliseconds() {
				t.Fatalf("close_in_ms %d, want 0..%d", ms, grace.Milliseconds())
			}
			c.expectClose(int(engine.CloseTokenExpired))
			within(t, "4011", c.endedAt, expAt.Add(grace), expAt.Add(grace+refreshTick+loadSlack))
		})
	}
}

// Without a refresh the connection gets token_expired at exp and is closed
// with 4011 at exp + grace: never earlier, and no later than one tick (plus
// the loaded machine's slack).
func TestIntegrationTokenExpiryCloses4011(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			const grace = 600 * time.Millisecond
			g := startGateway(t, engine.Options{TickInterval: refreshTick}, Options{InstanceID: "inst-e", TokenGrace: grace})
			exp := shortExp()
			c := g.connect(dialOpts{protocols: cc.protocols})
			c.send(map[string]any{"type": "auth", "token": mintExp(t, auth.Claims{Sub: "alice"}, exp), "id": "a"})
			if ok := c.expect("auth:ok"); num(t, ok, "exp") != exp || ok["id"] != "a" {
				t.Fatalf("auth:ok %v: want exp %d and id a", ok, exp)
			}
			c.join("a")
			expAt := time.Unix(exp, 0)
			m, at := c.expectTimed("token_expired")
			within(t, "token_expired", at, expAt, expAt.Add(refreshTick+loadSlack))
			// close_in_ms is what is left of the grace when it was written.
			if ms := num(t, m, "close_in_ms"); ms > grace.Milliseconds() || ms < grace.Milliseconds()-(refreshTick+loadSlack).Milliseconds() {
				t.Fatalf("close_in_ms %d, want about %d", ms, grace.Milliseconds())
			}
			c.expectClose(int(engine.CloseTokenExpired))
			within(t, "4011", c.endedAt, expAt.Add(grace), expAt.Add(grace+refreshTick+loadSlack))
			st := g.routerStats()
			if st.TokensExpired != 1 || st.ExpiryCloses != 1 {
				t.Fatalf("expiry counters %+v", st)
			}
			eventually(t, "closes 4011 counted", func() bool {
				es := g.engineStats()
				return es.CloseCount(engine.CloseTokenExpired) == 1
			})
		})
	}
}

// A refresh within the grace keeps the connection: the 4011 of the old token
// never comes, and the new exp is honoured (its own token_expired and close).
func TestIntegrationRefreshWithinGrace(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			const grace = time.Second
			g := startGateway(t, engine.Options{TickInterval: refreshTick}, Options{InstanceID: "inst-g", TokenGrace: grace})
			other := g.user("other")
			other.join("a")
			exp := shortExp()
			c := g.connect(dialOpts{query: mintExp(t, auth.Claims{Sub: "alice"}, exp), protocols: cc.protocols})
			c.expect("auth:ok")
			c.join("a")
			c.expectTimed("token_expired")

			newExp := exp + 3 // past the old close (exp + 1s)
			c.send(map[string]any{"type": "refresh", "token": mintExp(t, auth.Claims{Sub: "alice"}, newExp), "id": "r"})
			if m := c.expect("refreshed"); num(t, m, "exp") != newExp || m["id"] != "r" {
				t.Fatalf("refreshed %v: want exp %d, id r", m, newExp)
			}
			other.send(`{"type":"message","room":"a","data":1}`)
			c.expectDelivery("room", "a", "other") // still a member

			// The next event is the new token's expiry: the connection
			// outlived the old exp + grace without a close.
			newAt := time.Unix(newExp, 0)
			_, at := c.expectTimed("token_expired")
			within(t, "second token_expired", at, newAt, newAt.Add(refreshTick+loadSlack))
			c.expectClose(int(engine.CloseTokenExpired))
			within(t, "4011", c.endedAt, newAt.Add(grace), newAt.Add(grace+refreshTick+loadSlack))
		})
	}
}

// refresh before auth is refused like any message but auth and ping; auth
// on an authenticated connection stays a bad request (refresh is the way).
func TestIntegrationRefreshBeforeAuth(t *testing.T) {
	for _, cc := range codecsUnderTest {
		t.Run(cc.name, func(t *testing.T) {
			g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-p"})
			c := g.connect(dialOpts{protocols: cc.protocols})
			c.send(map[string]any{"type": "refresh", "token": token(t, auth.Claims{Sub: "alice"}), "id": "r0"})
			if e := c.expectErr(wire.CodeUnauthorized); e["id"] != "r0" {
				t.Fatalf("error %v without the client id", e)
			}
			c.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "alice"})})
			c.expect("auth:ok")
			c.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "alice"}), "id": "a2"})
			if e := c.expectErr(wire.CodeBadRequest); e["message"] != "already authenticated" {
				t.Fatalf("second auth: %v", e)
			}
			if st := g.routerStats(); st.RefreshOK+st.RefreshForbidden+st.RefreshInvalid != 0 {
				t.Fatalf("a refused refresh was counted: %+v", st)
			}
		})
	}
}

// A token without exp (-jwt-allow-no-exp): no exp in auth:ok or refreshed,
// no token_expired, and a refresh to a token with exp arms the expiry.
func TestIntegrationRefreshNoExp(t *testing.T) {
	const grace = 200 * time.Millisecond
	g := startGateway(t, engine.Options{TickInterval: refreshTick}, Options{InstanceID: "inst-n", TokenGrace: grace,
		Auth: auth.Config{Secret: testSecret, AllowNoExp: true}})
	noExp, err := auth.MintHS256(testSecret, auth.Claims{Sub: "alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := g.connect(dialOpts{query: noExp})
	if ok := c.expect("auth:ok"); ok["exp"] != nil {
		t.Fatalf("auth:ok %v: exp without one in the token", ok)
	}
	c.send(map[string]any{"type": "refresh", "token": noExp})
	if m := c.expect("refreshed"); m["exp"] != nil {
		t.Fatalf("refreshed %v: exp without one in the token", m)
	}
	exp := shortExp()
	c.send(map[string]any{"type": "refresh", "token": mintExp(t, auth.Claims{Sub: "alice"}, exp)})
	if m := c.expect("refreshed"); num(t, m, "exp") != exp {
		t.Fatalf("refreshed %v: want exp %d", m, exp)
	}
	_, at := c.expectTimed("token_expired")
	within(t, "token_expired", at, time.Unix(exp, 0), time.Unix(exp, 0).Add(refreshTick+loadSlack))
	c.expectClose(int(engine.CloseTokenExpired))
}

// gw.protobuf: exp in auth:ok, refresh and refreshed, and left revoked carry
// their fields (ServerMessage 30, reason 13).
func TestIntegrationRefreshProtobuf(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-pb"})
	c := g.pbUser(auth.Claims{Sub: "pb", Rooms: []string{"a", "b"}, RoomsSet: true})
	c.join("a")
	c.join("b")
	exp := time.Now().Unix() + 600
	c.send(fmt.Sprintf(`{"type":"refresh","token":%q,"id":"r"}`, mintExp(t, auth.Claims{Sub: "pb", Rooms: []string{"a"}, RoomsSet: true}, exp)))
	if m := c.expect("left"); m["room"] != "b" || m["reason"] != wire.LeftRevoked {
		t.Fatalf("left %v: want room b revoked", m)
	}
	if m := c.expect("refreshed"); num(t, m, "exp") != exp || m["id"] != "r" {
		t.Fatalf("refreshed %v: want exp %d, id r", m, exp)
	}
	c.alive()
}
