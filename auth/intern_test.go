package auth

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/golang-jwt/jwt/v5"
)

// mintFor signs c for tests, an hour from now.
func mintFor(t testing.TB, c Claims) []byte {
	t.Helper()
	tok, err := MintHS256(authTestSecret, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(tok)
}

func verifyOK(t testing.TB, v *Verifier, tok []byte) Grant {
	t.Helper()
	g, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// rawHS256 signs a claims body given as raw JSON, so a test controls the
// order of keys inside it.
func rawHS256(t testing.TB, body string) []byte {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(body))
	sig, err := jwt.SigningMethodHS256.Sign(signing, authTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(signing + "." + enc.EncodeToString(sig))
}

// waitTableLen collects garbage until v's intern table holds want entries
// (cleanups run on their own goroutine after the collection that freed a
// value), failing after a deadline.
func waitTableLen(t *testing.T, v *Verifier, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if n := v.perms.len(); n == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("intern table holds %d entries after 10 s of collections, want %d", n, want)
		}
		time.Sleep(time.Millisecond) // let the cleanup goroutine run
	}
}

// Tokens of different users and expiries with the same permission claims
// share one *Permissions; a difference in any permission claim (including
// absent against empty, and list order) gives another. Tag order inside the
// token does not matter.
func TestInternSharesSamePermissions(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	base := Claims{Rooms: []string{"lobby", "chat.*"}, RoomsSet: true, Pub: []string{"news"},
		SubChannels: []string{"prices.**"}, SubChannelsSet: true, RPC: []string{"svc.*"}, RPCSet: true,
		Tags: map[string]string{"region": "eu", "plan": "pro"}}
	a := base
	a.Sub = "alice"
	b := base
	b.Sub, b.Admin, b.Exp = "bob", true, time.Now().Add(2*time.Hour)
	tokB, err := MintHS256(authTestSecret, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	ga, gb := verifyOK(t, v, mintFor(t, a)), verifyOK(t, v, []byte(tokB))
	if ga.Perms != gb.Perms {
		t.Fatal("two tokens with the same permission claims got two Permissions")
	}
	if ga.Sub != "alice" || gb.Sub != "bob" || ga.Admin || !gb.Admin || ga.Exp == gb.Exp {
		t.Fatalf("per-token parts mixed up: %+v %+v", ga, gb)
	}

	tagsAB := rawHS256(t, fmt.Sprintf(`{"sub":"x","exp":%d,"tags":{"a":"1","b":"2"}}`, time.Now().Add(time.Hour).Unix()))
	tagsBA := rawHS256(t, fmt.Sprintf(`{"sub":"y","exp":%d,"tags":{"b":"2","a":"1"}}`, time.Now().Add(time.Hour).Unix()))
	if verifyOK(t, v, tagsAB).Perms != verifyOK(t, v, tagsBA).Perms {
		t.Fatal("tags written in another order were not shared")
	}

	variants := map[string]func(c *Claims){
		"rooms absent":        func(c *Claims) { c.Rooms, c.RoomsSet = nil, false },
		"rooms empty":         func(c *Claims) { c.Rooms = []string{} },
		"rooms other":         func(c *Claims) { c.Rooms = []string{"lobby", "chat.x"} },
		"rooms order":         func(c *Claims) { c.Rooms = []string{"chat.*", "lobby"} },
		"pub absent":          func(c *Claims) { c.Pub = nil },
		"pub empty":           func(c *Claims) { c.Pub = []string{} },
		"pub other":           func(c *Claims) { c.Pub = []string{"news2"} },
		"sub_channels absent": func(c *Claims) { c.SubChannels, c.SubChannelsSet = nil, false },
		"sub_channels other":  func(c *Claims) { c.SubChannels = []string{"prices.*"} },
		"rpc absent":          func(c *Claims) { c.RPC, c.RPCSet = nil, false },
		"rpc empty":           func(c *Claims) { c.RPC = []string{} },
		"tags absent":         func(c *Claims) { c.Tags = nil },
		"tag value":           func(c *Claims) { c.Tags = map[string]string{"region": "us", "plan": "pro"} },
		"tag key":             func(c *Claims) { c.Tags = map[string]string{"zone": "eu", "plan": "pro"} },
		"one tag fewer":       func(c *Claims) { c.Tags = map[string]string{"region": "eu"} },
	}
	seen := map[*Permissions]string{ga.Perms: "base"}
	for name, change := range variants {
		c := base
		c.Sub = "alice"
		change(&c)
		g := verifyOK(t, v, mintFor(t, c))
		if prev, ok := seen[g.Perms]; ok {
			t.Errorf("%s shares its Permissions with %s", name, prev)
		}
		seen[g.Perms] = name
		got, want := g.Claims(), c
		want.Exp = got.Exp
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: verified %+v, minted %+v", name, got, want)
		}
	}
	runtime.KeepAlive(ga)
	runtime.KeepAlive(gb)
}

// Entries go when no grant holds their Permissions any more, and an entry
// still in use stays and keeps being shared.
func TestInternReleasesUnused(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	kept := verifyOK(t, v, mintFor(t, Claims{Sub: "keeper", Rooms: []string{"kept"}}))
	for i := range 200 {
		verifyOK(t, v, mintFor(t, Claims{Sub: "u", Rooms: []string{fmt.Sprint("room", i)}}))
	}
	if n := v.perms.len(); n < 2 {
		t.Fatalf("intern table holds %d entries after 201 distinct permissions", n)
	}
	waitTableLen(t, v, 1)
	again := verifyOK(t, v, mintFor(t, Claims{Sub: "other", Rooms: []string{"kept"}}))
	if again.Perms != kept.Perms {
		t.Fatal("an entry still in use was not shared after collections")
	}
	runtime.KeepAlive(kept.Perms)
	runtime.KeepAlive(again.Perms)
	waitTableLen(t, v, 0)
}

// forget deletes an entry only while it holds the weak pointer it was made
// for: a key interned again after its value died keeps its new entry.
func TestInternForgetOnlyItsOwnEntry(t *testing.T) {
	tbl := newPermTable(4)
	oldP, newP := &Permissions{}, &Permissions{}
	stale := permEntry{key: "k", ptr: weak.Make(oldP)}
	if got := tbl.intern([]byte("k"), newP); got != newP {
		t.Fatal("intern into an empty table did not return the value")
	}
	tbl.forget(stale)
	if tbl.lookup([]byte("k")) != newP {
		t.Fatal("a stale cleanup deleted the entry that replaced it")
	}
	tbl.forget(permEntry{key: "k", ptr: weak.Make(newP)})
	if tbl.len() != 0 {
		t.Fatal("the entry's own cleanup did not delete it")
	}
	runtime.KeepAlive(oldP)
	runtime.KeepAlive(newP)
}

// A full table hands out new permissions unshared, correct, and does not
// grow; once entries die there is room again.
func TestInternBounded(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	v.perms = newPermTable(4)
	var grants []Grant
	for i := range 10 {
		g := verifyOK(t, v, mintFor(t, Claims{Sub: "u", Rooms: []string{fmt.Sprint("r", i)}}))
		if !g.MayJoin(fmt.Append(nil, "r", i)) || g.MayJoin(fmt.Append(nil, "r", i+1)) {
			t.Fatalf("grant %d: wrong permissions %+v", i, g.Claims())
		}
		grants = append(grants, g)
	}
	if n := v.perms.len(); n != 4 {
		t.Fatalf("bounded table holds %d entries, want 4", n)
	}
	first := verifyOK(t, v, mintFor(t, Claims{Sub: "v", Rooms: []string{"r0"}}))
	if first.Perms != grants[0].Perms {
		t.Fatal("an interned entry is not shared once the table is full")
	}
	last := verifyOK(t, v, mintFor(t, Claims{Sub: "v", Rooms: []string{"r9"}}))
	if last.Perms == grants[9].Perms || !last.MayJoin([]byte("r9")) {
		t.Fatal("past the bound a value was shared or wrong")
	}
	runtime.KeepAlive(grants)
	runtime.KeepAlive(first)
	runtime.KeepAlive(last)
	waitTableLen(t, v, 0)
	g := verifyOK(t, v, mintFor(t, Claims{Sub: "w", Rooms: []string{"r9"}}))
	if v.perms.len() != 1 || verifyOK(t, v, mintFor(t, Claims{Sub: "x", Rooms: []string{"r9"}})).Perms != g.Perms {
		t.Fatal("no sharing after the table emptied")
	}
}

// Loops verify at once: every grant of one permission set shares one value
// and answers as its claims say (run with -race).
func TestInternConcurrentVerify(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	const sets, workers, each = 4, 8, 40
	toks := make([][]byte, sets)
	for i := range toks {
		toks[i] = mintFor(t, Claims{Sub: fmt.Sprint("u", i), Rooms: []string{fmt.Sprint("room", i)}, Pub: []string{"p.*"}})
	}
	got := make([][]Grant, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				g, err := v.Verify(toks[(w+i)%sets])
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], g)
			}
		})
	}
	wg.Wait()
	shared := map[string]*Permissions{}
	for _, gs := range got {
		for _, g := range gs {
			if p, ok := shared[g.Sub]; ok && p != g.Perms {
				t.Fatalf("%s: two Permissions for one set of claims", g.Sub)
			}
			shared[g.Sub] = g.Perms
			room := "room" + g.Sub[1:]
			if !g.MayJoin([]byte(room)) || g.MayJoin([]byte("room9")) || !g.MayPublish([]byte("p.x")) {
				t.Fatalf("%s: wrong permissions %+v", g.Sub, g.Claims())
			}
		}
	}
	if len(shared) != sets || v.perms.len() != sets {
		t.Fatalf("%d distinct values, %d entries, want %d", len(shared), v.perms.len(), sets)
	}
}

// Every permission claim decides as before the split: a table of claims and
// names with the expected answers, checked on the verified Grant, on its
// shared Permissions, and against the flat Claims the token was minted from.
func TestGrantPermissionsAsClaims(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	type answers struct{ join, pub, sub, rpc bool }
	cases := []struct {
		name   string
		claims Claims
		want   map[string]answers
	}{
		{"no claims", Claims{}, map[string]answers{
			"lobby": {join: true, sub: true, rpc: true}, "a.b.c": {join: true, sub: true, rpc: true}}},
		{"rooms set", Claims{Rooms: []string{"lobby", "chat.*"}, RoomsSet: true}, map[string]answers{
			"lobby": {join: true, sub: true, rpc: true}, "chat.x": {join: true, sub: true, rpc: true},
			"chat.x.y": {sub: true, rpc: true}, "lobby2": {sub: true, rpc: true}}},
		{"rooms empty", Claims{Rooms: []string{}, RoomsSet: true}, map[string]answers{
			"lobby": {sub: true, rpc: true}}},
		{"pub", Claims{Pub: []string{"prices.**", "news"}}, map[string]answers{
			"prices.a.b": {join: true, pub: true, sub: true, rpc: true}, "news": {join: true, pub: true, sub: true, rpc: true},
			"newsx": {join: true, sub: true, rpc: true}}},
		{"pub empty", Claims{Pub: []string{}}, map[string]answers{
			"news": {join: true, sub: true, rpc: true}}},
		{"sub_channels set", Claims{SubChannels: []string{"prices.*"}, SubChannelsSet: true}, map[string]answers{
			"prices.btc": {join: true, sub: true, rpc: true}, "prices.btc.usd": {join: true, rpc: true}}},
		{"sub_channels empty", Claims{SubChannels: []string{}, SubChannelsSet: true}, map[string]answers{
			"prices.btc": {join: true, rpc: true}}},
		{"rpc set", Claims{RPC: []string{"orders.*", "users.get"}, RPCSet: true}, map[string]answers{
			"orders.get": {join: true, sub: true, rpc: true}, "orders.get.v2": {join: true, sub: true},
			"users.put": {join: true, sub: true}}},
		{"rpc empty", Claims{RPC: []string{}, RPCSet: true}, map[string]answers{
			"orders.get": {join: true, sub: true}}},
		{"tags and admin", Claims{Tags: map[string]string{"region": "eu"}, Admin: true}, map[string]answers{
			"lobby": {join: true, sub: true, rpc: true}}},
		{"everything", Claims{Rooms: []string{"r.*"}, RoomsSet: true, Pub: []string{"c.**"}, SubChannels: []string{"c.*"},
			SubChannelsSet: true, RPC: []string{"s.m"}, RPCSet: true, Tags: map[string]string{"k": "v"}, Admin: true},
			map[string]answers{"r.1": {join: true}, "c.1": {pub: true, sub: true}, "c.1.2": {pub: true}, "s.m": {rpc: true}, "x": {}}},
	}
	for _, tc := range cases {
		c := tc.claims
		c.Sub = "alice"
		g := verifyOK(t, v, mintFor(t, c))
		flat := g.Claims()
		if flat.Admin != c.Admin || !reflect.DeepEqual(flat.Tags, c.Tags) {
			t.Errorf("%s: admin/tags %v %v, want %v %v", tc.name, flat.Admin, flat.Tags, c.Admin, c.Tags)
		}
		for name, want := range tc.want {
			n := []byte(name)
			for _, check := range []struct {
				what                 string
				grant, perms, minted bool
				want                 bool
			}{
				{"MayJoin", g.MayJoin(n), g.Perms.MayJoin(n), c.MayJoin(n), want.join},
				{"MayPublish", g.MayPublish(n), g.Perms.MayPublish(n), c.MayPublish(n), want.pub},
				{"MaySubscribe", g.MaySubscribe(n), g.Perms.MaySubscribe(n), c.MaySubscribe(n), want.sub},
				{"MayRPC", g.MayRPC(n), g.Perms.MayRPC(n), c.MayRPC(n), want.rpc},
			} {
				if check.grant != check.want || check.perms != check.want || check.minted != check.want {
					t.Errorf("%s: %s(%s): grant %v, permissions %v, minted claims %v; want %v",
						tc.name, check.what, name, check.grant, check.perms, check.minted, check.want)
				}
			}
		}
	}
	limited := cases[1].claims
	limited.Sub = "bob"
	g := verifyOK(t, v, mintFor(t, limited))
	if a := testing.AllocsPerRun(20, func() { g.MayJoin([]byte("chat.general")) }); a != 0 {
		t.Errorf("Grant.MayJoin allocates %.1f", a)
	}
}

// BenchmarkVerifySharedPermissions: tokens of many users with the same
// permission claims, the common case the intern table serves.
func BenchmarkVerifySharedPermissions(b *testing.B) {
	v := mustVerifier(b, Config{Secret: authTestSecret})
	toks := make([][]byte, 64)
	for i := range toks {
		toks[i] = mintFor(b, Claims{Sub: fmt.Sprint("user", i), Rooms: []string{"lobby", "chat.*"}, Pub: []string{"chat.*"},
			Tags: map[string]string{"plan": "pro"}})
	}
	keep := verifyOK(b, v, toks[0]) // the shared value stays interned throughout
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := v.Verify(toks[i%len(toks)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	runtime.KeepAlive(keep.Perms)
}
