package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	jsclient "github.com/wsgate/wsgate/clients/js"
	"github.com/wsgate/wsgate/internal/browsertest"
)

// TestDemoPage checks /demo and /demo/config.json without a browser.
func TestDemoPage(t *testing.T) {
	gw := startGateway(t, baseArgs()...)
	code, body, err := gw.adminGet("/demo/")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "app.js") {
		t.Fatalf("/demo/: %d %v\n%s", code, err, body)
	}
	if code, body, _ := gw.adminGet("/demo/app.js"); code != http.StatusOK || !strings.Contains(body, `from "../client/wsgate.js"`) {
		t.Fatalf("/demo/app.js: %d, want it built on the client library", code)
	}
	version, err := jsclient.Version()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/client/wsgate.js", "/client/wsgate-" + version + ".js"} {
		code, body, err := gw.adminGet(path)
		if err != nil || code != http.StatusOK || body != string(jsclient.Source) {
			t.Fatalf("%s: %d %v, want the library's source", path, code, err)
		}
	}
	if code, _, _ := gw.adminGet("/client/wsgate-0.0.0-none.js"); code != http.StatusNotFound {
		t.Fatalf("an unknown version: %d, want 404", code)
	}
	code, body, err = gw.adminGet("/demo/config.json")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/demo/config.json: %d %v", code, err)
	}
	var cfg demoInfo
	if err := json.Unmarshal([]byte(body), &cfg); err != nil {
		t.Fatal(err)
	}
	if want := "ws://" + gw.Addr + "/ws"; cfg.WSURL != want || cfg.Mode != "router" {
		t.Fatalf("config %+v, want ws_url %s", cfg, want)
	}
	// The hint is a command that works from a checkout: the gateway binary
	// is not on $PATH.
	if !strings.Contains(cfg.TokenCommand, "go run ./cmd/gateway token ") {
		t.Fatalf("token command %q, want one that runs from a checkout", cfg.TokenCommand)
	}
}

func TestWSURL(t *testing.T) {
	for _, c := range []struct{ addr, host, want string }{
		{"127.0.0.1:8080", "localhost:9090", "ws://127.0.0.1:8080/ws"},
		{"0.0.0.0:8080", "gw.example:9090", "ws://gw.example:8080/ws"},
		{"[::]:8080", "[::1]:9090", "ws://[::1]:8080/ws"},
		{":8080", "", "ws://127.0.0.1:8080/ws"},
	} {
		if got := wsURL(c.addr, "/ws", c.host); got != c.want {
			t.Errorf("wsURL(%q, %q) = %q, want %q", c.addr, c.host, got, c.want)
		}
	}
}

// TestDemoBrowser opens the demo page in two tabs of a headless Chromium
// (skipped when none is installed), chats between them with presence live
// in both, restarts the gateway (history on) on the same ports and checks
// that both pages reconnect by themselves, resume, show no message twice
// (their own ones included) and chat again.
func TestDemoBrowser(t *testing.T) {
	b := browsertest.New(t)
	dataDir := t.TempDir()
	args := func(addr, admin string) []string {
		return []string{
			"-jwt-secret", testSecret, "-addr", addr, "-admin-addr", admin,
			"-nats-listen", "-", "-loops", "2", "-presence-events", "-drain-time", "1s",
			"-history", "-data-dir", dataDir,
		}
	}
	gw := startGateway(t, args("127.0.0.1:0", "127.0.0.1:0")...)
	addr, admin := gw.Addr, gw.Admin

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// open loads the demo as user; extra query parameters pick, for
	// example, the page's encoding.
	open := func(user, query string) *browsertest.Tab {
		tab, err := b.NewTab()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tab.Close)
		if err := tab.Navigate(ctx, fmt.Sprintf("http://%s/demo/?room=lobby&token=%s%s", admin, token(t, user), query)); err != nil {
			t.Fatal(err)
		}
		return tab
	}
	wait := func(tab *browsertest.Tab, what, js string) string {
		t.Helper()
		v, err := tab.Wait(ctx, js, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	// Bob's page speaks gw.msgpack (the library's own codec, in the
	// browser), alice's gw.json: they meet in one room.
	alice, bob := open("alice", ""), open("bob", "&enc=msgpack")
	wait(alice, "alice joined", `demo.state === "joined" && demo.user`)
	wait(bob, "bob joined", `demo.state === "joined" && demo.user`)
	wait(bob, "bob speaks msgpack", `demo.client.ws.protocol === "gw.msgpack" && "ok"`)
	// Presence: each page sees both users (bob joined last; alice hears
	// user:joined and asks again).
	wait(alice, "alice sees bob", `demo.presence.join(",") === "alice,bob" && "ok"`)
	wait(bob, "bob sees alice", `demo.presence.join(",") === "alice,bob" && "ok"`)

	say := func(tab *browsertest.Tab, text string) {
		t.Helper()
		if err := tab.Eval(ctx, fmt.Sprintf(`demo.send(%q)`, text), nil); err != nil {
			t.Fatal(err)
		}
	}
	say(alice, "hello before restart")
	wait(bob, "bob gets the first message", `demo.messages.some(m => m.from === "alice" && m.text === "hello before restart" && m.seq > 0) && "ok"`)
	// Alice gets a seq too (bob's message), then sends one more: after the
	// restart she resumes from bob's seq, and the replay holds her own
	// message, which she must recognise (the ack's mid) and not show again.
	say(bob, "hi alice")
	wait(alice, "alice gets bob's message", `demo.messages.some(m => m.from === "bob" && m.text === "hi alice" && m.seq > 0) && "ok"`)
	say(alice, "alice again")
	wait(bob, "bob gets alice's second", `demo.messages.some(m => m.text === "alice again") && "ok"`)
	// Presence is live: a third user comes and goes, both pages follow.
	carol := open("carol", "")
	for name, tab := range map[string]*browsertest.Tab{"alice": alice, "bob": bob} {
		wait(tab, name+" sees carol", `demo.presence.join(",") === "alice,bob,carol" && "ok"`)
	}
	if err := carol.Eval(ctx, `demo.disconnect()`, nil); err != nil {
		t.Fatal(err)
	}
	for name, tab := range map[string]*browsertest.Tab{"alice": alice, "bob": bob} {
		wait(tab, name+" sees carol leave", `demo.presence.join(",") === "alice,bob" && "ok"`)
	}

	// Restart on the same ports.
	gw.Signal(syscall.SIGTERM)
	if code, ok := gw.Wait(15 * time.Second); !ok || code != 0 {
		t.Fatalf("gateway exit %d (exited %v), want 0", code, ok)
	}
	// Each page got the drain's reconnect notice and then the 1001 close
	// (a failed reconnect attempt meanwhile would show 1006 instead).
	for name, tab := range map[string]*browsertest.Tab{"alice": alice, "bob": bob} {
		v := wait(tab, name+" reconnect notice", `demo.lastReconnectAfter !== null && demo.closes.length > 0 && JSON.stringify({after: demo.lastReconnectAfter, closes: demo.closes})`)
		var got struct {
			After  int   `json:"after"`
			Closes []int `json:"closes"`
		}
		if err := json.Unmarshal([]byte(v), &got); err != nil {
			t.Fatal(err)
		}
		if got.Closes[0] != 1001 || got.After < 0 || got.After >= 1000 {
			t.Fatalf("%s: after_ms %d, closes %v; want after_ms in [0,1000) and a 1001 close first", name, got.After, got.Closes)
		}
	}
	waitPortFree(t, addr)
	gw2 := startGateway(t, args(addr, admin)...)
	if gw2.Addr != addr || gw2.Admin != admin {
		t.Fatalf("restarted on %s/%s, want %s/%s", gw2.Addr, gw2.Admin, addr, admin)
	}

	for name, tab := range map[string]*browsertest.Tab{"alice": alice, "bob": bob} {
		wait(tab, name+" reconnects", `demo.reconnects >= 1 && demo.state === "joined" && "ok"`)
	}
	wait(alice, "alice sees bob again", `demo.presence.join(",") === "alice,bob" && "ok"`)
	if err := bob.Eval(ctx, `demo.send("hello after restart")`, nil); err != nil {
		t.Fatal(err)
	}
	wait(alice, "alice gets the message after the restart", `demo.messages.some(m => m.from === "bob" && m.text === "hello after restart") && "ok"`)
	say(alice, "alice after restart")
	wait(bob, "bob gets alice's message after the restart", `demo.messages.some(m => m.text === "alice after restart") && "ok"`)
	// Nothing twice, in the data or on the screen.
	lines := func(tab *browsertest.Tab) map[string]int {
		t.Helper()
		var texts []string
		if err := tab.Eval(ctx, `[...document.querySelectorAll("#messages li:not(.sys)")].map(li => li.lastChild.textContent)`, &texts); err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, s := range texts {
			n[s]++
		}
		return n
	}
	want := map[string]int{"hello before restart": 1, "hi alice": 1, "alice again": 1, "hello after restart": 1, "alice after restart": 1}
	for name, tab := range map[string]*browsertest.Tab{"alice": alice, "bob": bob} {
		if got := lines(tab); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s's page shows %v, want each message once: %v", name, got, want)
		}
		var dups int
		if err := tab.Eval(ctx, `demo.messages.length - new Set(demo.messages.map(m => m.id)).size`, &dups); err != nil || dups != 0 {
			t.Errorf("%s: %d duplicate message ids (%v)", name, dups, err)
		}
	}
	var closes []int
	if err := alice.Eval(ctx, `demo.closes`, &closes); err != nil {
		t.Fatal(err)
	}
	t.Logf("alice's page reconnected by itself; close codes seen: %v", closes)
}

// waitPortFree waits until addr can be bound again (the old process is gone).
func waitPortFree(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() string {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err.Error()
		}
		_ = ln.Close()
		return ""
	})
}

// TestDemoBrowserRefresh drives the demo page through a token's expiry: the
// page shows token_expired, a fresh token pasted into the form goes out as
// `refresh`, and the connection lives on past the old token's exp plus the
// grace (PROTOCOL.md section 9) without a reconnect.
func TestDemoBrowserRefresh(t *testing.T) {
	b := browsertest.New(t)
	const grace = 2 * time.Second
	gw := startGateway(t, "-jwt-secret", testSecret, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-nats-listen", "-", "-loops", "2", "-token-grace", grace.String())
	short, err := auth.MintHS256([]byte(testSecret), auth.Claims{Sub: "carol"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tab, err := b.NewTab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tab.Close)
	if err := tab.Navigate(ctx, fmt.Sprintf("http://%s/demo/?room=lobby&token=%s", gw.Admin, short)); err != nil {
		t.Fatal(err)
	}
	wait := func(what, js string) string {
		t.Helper()
		v, err := tab.Wait(ctx, js, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	wait("joined with a short token", `demo.state === "joined" && demo.exp > 0 && "ok"`)
	var oldExp int64
	if err := tab.Eval(ctx, `demo.exp`, &oldExp); err != nil {
		t.Fatal(err)
	}
	wait("token_expired shown", `demo.expired && "ok"`)
	fresh := token(t, "carol")
	if err := tab.Eval(ctx, fmt.Sprintf(`(document.getElementById("token").value = %q, document.getElementById("refresh").click(), true)`, fresh), nil); err != nil {
		t.Fatal(err)
	}
	wait("refreshed", `demo.refreshes === 1 && !demo.expired && demo.exp > 0 && "ok"`)
	// Past the old exp plus the grace (and a tick): the connection is the
	// same one, still joined, and no close was seen.
	wait("the old deadline passed", fmt.Sprintf(`Date.now() > %d && "ok"`, (oldExp*1000)+grace.Milliseconds()+500))
	v := wait("still connected", `JSON.stringify({state: demo.state, closes: demo.closes, connects: demo.connects, exp: demo.exp})`)
	var got struct {
		State    string `json:"state"`
		Closes   []int  `json:"closes"`
		Connects int    `json:"connects"`
		Exp      int64  `json:"exp"`
	}
	if err := json.Unmarshal([]byte(v), &got); err != nil {
		t.Fatal(err)
	}
	if got.State != "joined" || len(got.Closes) != 0 || got.Connects != 1 || got.Exp <= oldExp {
		t.Fatalf("after the refresh: %+v (old exp %d); want one connection, still joined, no close, a later exp", got, oldExp)
	}
}
