package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/wire"
)

const ctlKey = "ctl-key"

// ctlHTTP sends one control request to p's admin port; key "" sends none.
func ctlHTTP(t *testing.T, p *gwProc, method, path, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.Admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// ctlOK is ctlHTTP that wants 200 and decodes the answer into a map.
func ctlOK(t *testing.T, p *gwProc, method, path, body string) map[string]any {
	t.Helper()
	code, ans := ctlHTTP(t, p, method, path, ctlKey, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s %s: %d %q, want 200", method, path, body, code, ans)
	}
	return decodeObj(t, ans)
}

func decodeObj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("answer %q: %v", s, err)
	}
	return m
}

// ctlNATS sends one control request over NATS (<gw>.ctl.<op>) and returns
// the answer's body and its Wsgate-Error header.
func ctlNATS(t *testing.T, nc *nats.Conn, op, body string) (map[string]any, string) {
	t.Helper()
	m, err := nc.Request("gw.ctl."+op, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("NATS %s %s: %v", op, body, err)
	}
	return decodeObj(t, string(m.Data)), m.Header.Get("Wsgate-Error")
}

// readObj reads the next message of cl as a generic object, skipping
// user:joined / user:left.
func readObj(t *testing.T, cl *wsClient) map[string]any {
	t.Helper()
	for {
		_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		op, b, err := cl.c.ReadMessage()
		if err != nil {
			t.Fatalf("%s: read: %v", cl.user, err)
		}
		if op == websocket.BinaryMessage { // gw.msgpack
			if b, err = wire.Transcode(nil, b, wire.CodecMsgpack, wire.CodecJSON); err != nil {
				t.Fatalf("%s: msgpack frame: %v", cl.user, err)
			}
		}
		m := decodeObj(t, string(b))
		if typ, _ := m["type"].(string); strings.HasPrefix(typ, "user:") {
			continue
		}
		return m
	}
}

// dialMsgpack connects a gw.msgpack client and reads auth:ok.
func dialMsgpack(t *testing.T, addr, user string) *wsClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"gw.msgpack"}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+"/ws?token="+token(t, user), nil)
	if err != nil {
		t.Fatalf("dial %s as %s (msgpack): %v", addr, user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if c.Subprotocol() != "gw.msgpack" {
		t.Fatalf("subprotocol %q, want gw.msgpack", c.Subprotocol())
	}
	cl := &wsClient{t: t, user: user, c: c}
	if m := readObj(t, cl); m["type"] != "auth:ok" {
		t.Fatalf("%s: first message %v, want auth:ok", user, m)
	}
	return cl
}

// wantObj reads the next message and compares it with want.
func wantObj(t *testing.T, cl *wsClient, want map[string]any) {
	t.Helper()
	if got := readObj(t, cl); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s got %v, want %v", cl.user, got, want)
	}
}

// wantClosed reads until the connection closes and checks code and reason.
func wantClosed(t *testing.T, cl *wsClient, code int, reason string) {
	t.Helper()
	_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := cl.c.ReadMessage(); err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok || ce.Code != code || ce.Text != reason {
				t.Fatalf("%s closed with %v, want %d %q", cl.user, err, code, reason)
			}
			return
		}
	}
}

func wantAnswer(t *testing.T, what string, got map[string]any, want string) {
	t.Helper()
	if w := decodeObj(t, want); !reflect.DeepEqual(got, w) {
		t.Fatalf("%s: got %v, want %s", what, got, want)
	}
}

// startControlPair starts instances a (embedding NATS) and b (its client),
// both with -api-key, and waits until each knows the other (info lists both).
func startControlPair(t *testing.T) (a, b *gwProc, nc *nats.Conn) {
	natsAddr := freeAddr(t)
	common := []string{"-api-key", ctlKey, "-presence-window", "3s", "-loops", "2"}
	a = startGateway(t, baseArgs(append([]string{"-nats-listen", natsAddr, "-instance-id", "a"}, common...)...)...)
	b = startGateway(t, append([]string{"-jwt-secret", testSecret, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-instance-id", "b", "-nats-url", "nats://" + natsAddr}, common...)...)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, p := range []*gwProc{a, b} {
		waitFor(t, 20*time.Second, func() string {
			code, ans := ctlHTTP(t, p, "GET", "/api/info", ctlKey, "")
			if code != 200 || !strings.Contains(ans, `"id":"a"`) || !strings.Contains(ans, `"id":"b"`) {
				return "info does not list both instances yet: " + strconv.Itoa(code) + " " + ans
			}
			return ""
		})
	}
	return a, b, nc
}

// TestControlAPI runs every control operation over HTTP and over NATS
// against two instances, with a user connected to both.
func TestControlAPI(t *testing.T) {
	a, b, nc := startControlPair(t)
	// alice is on both instances, in JSON on a and in msgpack on b.
	aliceA, aliceB, bob := dialClient(t, a.Addr, "alice"), dialMsgpack(t, b.Addr, "alice"), dialClient(t, b.Addr, "bob")

	// info, both ways: a has alice once, b has alice and bob.
	wantInfo := func(what string, got map[string]any) {
		t.Helper()
		inst, _ := got["instances"].([]any)
		if len(inst) != 2 {
			t.Fatalf("%s: %v, want two instances", what, got)
		}
		for i, want := range []struct{ id, conns, users float64 }{{0, 1, 1}, {0, 2, 2}} {
			m := inst[i].(map[string]any)
			if m["id"] != []string{"a", "b"}[i] || m["connections"] != want.conns || m["users"] != want.users {
				t.Fatalf("%s: instance %d %v, want connections %v users %v", what, i, m, want.conns, want.users)
			}
			if up, ok := m["uptime_s"].(float64); !ok || up <= 0 {
				t.Fatalf("%s: uptime_s %v", what, m["uptime_s"])
			}
		}
	}
	wantInfo("HTTP info on a", ctlOK(t, a, "GET", "/api/info", ""))
	got, errHdr := ctlNATS(t, nc, "info", "")
	if errHdr != "" {
		t.Fatalf("NATS info: error %s %v", errHdr, got)
	}
	wantInfo("NATS info", got)

	// subscribe over HTTP (asked on b): both of alice's connections join.
	wantAnswer(t, "HTTP subscribe", ctlOK(t, b, "POST", "/api/subscribe", `{"user":"alice","room":"ops"}`), `{"connections":2}`)
	for _, cl := range []*wsClient{aliceA, aliceB} {
		wantObj(t, cl, map[string]any{"type": "joined", "room": "ops", "server": true})
	}
	// The membership is real: a message to the room reaches alice on both.
	bob.join("ops")
	bob.send(map[string]any{"type": "message", "room": "ops", "data": "hi"})
	for _, cl := range []*wsClient{aliceA, aliceB} {
		if m := readObj(t, cl); m["type"] != "message" || m["data"] != "hi" {
			t.Fatalf("%s got %v, want the room message", cl.user, m)
		}
	}

	// presence and presence_stats count both instances, once bob's join
	// reached a's presence tracker.
	waitFor(t, 10*time.Second, func() string {
		if ans := ctlOK(t, a, "GET", "/api/presence_stats?room=ops", ""); ans["connections"] != 3.0 {
			return "presence_stats before propagation: " + string(mustJSON(ans))
		}
		return ""
	})
	wantAnswer(t, "HTTP presence", ctlOK(t, a, "GET", "/api/presence?room=ops", ""), `{"users":["alice","bob"]}`)
	wantAnswer(t, "HTTP presence_stats", ctlOK(t, a, "GET", "/api/presence_stats?room=ops", ""), `{"users":2,"connections":3}`)
	got, _ = ctlNATS(t, nc, "presence", `{"room":"ops"}`)
	wantAnswer(t, "NATS presence", got, `{"users":["alice","bob"]}`)
	got, _ = ctlNATS(t, nc, "presence_stats", `{"room":"ops"}`)
	wantAnswer(t, "NATS presence_stats", got, `{"users":2,"connections":3}`)

	// unsubscribe over NATS: both leave with reason server.
	got, _ = ctlNATS(t, nc, "unsubscribe", `{"user":"alice","room":"ops"}`)
	wantAnswer(t, "NATS unsubscribe", got, `{"connections":2}`)
	for _, cl := range []*wsClient{aliceA, aliceB} {
		wantObj(t, cl, map[string]any{"type": "left", "room": "ops", "reason": "server"})
	}
	waitFor(t, 10*time.Second, func() string { // once a's leaves reached b's tracker
		if ans := ctlOK(t, b, "GET", "/api/presence?room=ops", ""); !reflect.DeepEqual(ans, decodeObj(t, `{"users":["bob"]}`)) {
			return "presence after unsubscribe: " + string(mustJSON(ans))
		}
		return ""
	})

	// Channels: subscribe over NATS, unsubscribe over HTTP.
	got, _ = ctlNATS(t, nc, "subscribe", `{"user":"alice","channel":"news.eu"}`)
	wantAnswer(t, "NATS subscribe channel", got, `{"connections":2}`)
	for _, cl := range []*wsClient{aliceA, aliceB} {
		wantObj(t, cl, map[string]any{"type": "subscribed", "channel": "news.eu", "server": true})
	}
	wantAnswer(t, "HTTP unsubscribe channel", ctlOK(t, a, "POST", "/api/unsubscribe", `{"user":"alice","channel":"news.eu"}`), `{"connections":2}`)
	for _, cl := range []*wsClient{aliceA, aliceB} {
		wantObj(t, cl, map[string]any{"type": "unsubscribed", "channel": "news.eu", "reason": "server"})
	}

	// A user with no connections anywhere: 0, not an error.
	wantAnswer(t, "subscribe nobody", ctlOK(t, a, "POST", "/api/subscribe", `{"user":"carol","room":"ops"}`), `{"connections":0}`)

	// disconnect over HTTP (asked on a): both of alice's connections close with 4012.
	wantAnswer(t, "HTTP disconnect", ctlOK(t, a, "POST", "/api/disconnect", `{"user":"alice","reconnect":true,"reason":"maintenance"}`), `{"connections":2}`)
	wantClosed(t, aliceA, 4012, "maintenance")
	wantClosed(t, aliceB, 4012, "maintenance")
	// disconnect over NATS without reconnect: 4502.
	got, _ = ctlNATS(t, nc, "disconnect", `{"user":"bob","reason":"banned"}`)
	wantAnswer(t, "NATS disconnect", got, `{"connections":1}`)
	wantClosed(t, bob, 4502, "banned")
	waitFor(t, 10*time.Second, func() string {
		if ans := ctlOK(t, a, "GET", "/api/presence_stats?room=ops", ""); ans["connections"] != 0.0 {
			return "presence after disconnects: " + strconv.Quote(strings.TrimSpace(string(mustJSON(ans))))
		}
		return ""
	})

	// Metrics count operations by op and outcome; the NATS requests went to
	// whichever instance the queue group picked, so sum the two.
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`wsgate_control_operations_total{op="disconnect",outcome="ok"}`, 2},
		{`wsgate_control_operations_total{op="subscribe",outcome="ok"}`, 3},
		{`wsgate_control_operations_total{op="presence",outcome="ok"}`, 3},
		{`wsgate_control_operations_total{op="info",outcome="ok"}`, 1},
	} {
		sum := seriesValue(t, a, c.series) + seriesValue(t, b, c.series)
		if c.series == `wsgate_control_operations_total{op="info",outcome="ok"}` {
			// info was also polled while waiting for the instances to meet.
			if sum < 3 {
				t.Errorf("%s: %v in all, want at least 3", c.series, sum)
			}
			continue
		}
		if sum != c.want {
			t.Errorf("%s: %v in all, want %v", c.series, sum, c.want)
		}
	}
}

// seriesValue is the value of one series in p's /metrics (0 when absent).
func seriesValue(t *testing.T, p *gwProc, series string) float64 {
	t.Helper()
	_, text, err := p.adminGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", series, line)
			}
			return f
		}
	}
	return 0
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestControlAPIErrors covers every error row: bad bodies (HTTP and NATS),
// a bad key, no -api-key, and the backplane down.
func TestControlAPIErrors(t *testing.T) {
	a, b, nc := startControlPair(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/disconnect", `{"user":`},
		{"POST", "/api/disconnect", `{"user":"bad name"}`},
		{"POST", "/api/disconnect", `{"user":"u","colour":"red"}`},
		{"POST", "/api/disconnect", `{"user":"u","reason":"` + strings.Repeat("x", 124) + `"}`},
		{"POST", "/api/subscribe", `{"user":"u"}`},
		{"POST", "/api/subscribe", `{"user":"u","room":"r","channel":"c"}`},
		{"POST", "/api/unsubscribe", `[]`},
		{"POST", "/api/disconnect", `{"user":"u","room":"r"}`},
		{"POST", "/api/subscribe", `{"user":"u","room":"r","reconnect":true}`},
		{"GET", "/api/presence", ""},
		{"GET", "/api/presence?room=r&x=1", ""},
		{"GET", "/api/presence_stats?room=a%20b", ""},
		{"GET", "/api/history?room=r&limit=0", ""},
	} {
		if code, ans := ctlHTTP(t, a, c.method, c.path, ctlKey, c.body); code != http.StatusBadRequest {
			t.Errorf("%s %s %s: %d %q, want 400", c.method, c.path, c.body, code, ans)
		}
	}
	for _, c := range []struct{ op, body string }{{"disconnect", `{"user":`}, {"subscribe", `{"user":"u"}`}, {"nonsense", `{}`}, {"info", `{"room":"r"}`}, {"presence", `{"room":"r","user":"u"}`}} {
		got, hdr := ctlNATS(t, nc, c.op, c.body)
		if hdr != "400" || got["status"] != 400.0 || got["error"] == "" {
			t.Errorf("NATS %s %s: header %q body %v, want 400", c.op, c.body, hdr, got)
		}
	}
	if code, ans := ctlHTTP(t, a, "POST", "/api/disconnect", "wrong", `{"user":"u"}`); code != http.StatusUnauthorized {
		t.Errorf("bad key: %d %q, want 401", code, ans)
	}
	if code, ans := ctlHTTP(t, a, "GET", "/api/info", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no key: %d %q, want 401", code, ans)
	}
	// A history request without -history: unavailable.
	if code, ans := ctlHTTP(t, a, "GET", "/api/history?room=r", ctlKey, ""); code != http.StatusServiceUnavailable {
		t.Errorf("history without -history: %d %q, want 503", code, ans)
	}
	_, metrics, _ := a.adminGet("/metrics")
	if !strings.Contains(metrics, `wsgate_control_operations_total{op="disconnect",outcome="unauthorized"} 1`) {
		t.Errorf("metrics do not count the bad key:\n%s", grepLines(metrics, "control_operations"))
	}

	// The backplane down: a (with the NATS server) dies, b answers 503.
	a.Signal(syscall.SIGKILL)
	if _, ok := a.Wait(10 * time.Second); !ok {
		t.Fatal("instance a did not die")
	}
	waitFor(t, 20*time.Second, func() string {
		if code, ans := ctlHTTP(t, b, "GET", "/api/info", ctlKey, ""); code != http.StatusServiceUnavailable {
			return "b's info with NATS gone: " + strconv.Itoa(code) + " " + ans + ", want 503"
		}
		return ""
	})
	if code, ans := ctlHTTP(t, b, "POST", "/api/disconnect", ctlKey, `{"user":"u"}`); code != http.StatusServiceUnavailable {
		t.Errorf("disconnect with NATS gone: %d %q, want 503", code, ans)
	}
}

// TestControlAPINoKey: without -api-key the control API answers 403.
func TestControlAPINoKey(t *testing.T) {
	p := startGateway(t, baseArgs()...)
	for _, path := range []string{"/api/info", "/api/presence?room=r"} {
		if code, ans := ctlHTTP(t, p, "GET", path, "anything", ""); code != http.StatusForbidden {
			t.Errorf("GET %s without -api-key: %d %q, want 403", path, code, ans)
		}
	}
	if code, ans := ctlHTTP(t, p, "POST", "/api/disconnect", "", `{"user":"u"}`); code != http.StatusForbidden {
		t.Errorf("POST /api/disconnect without -api-key: %d %q, want 403", code, ans)
	}
}

// TestControlAPIHistory reads a room's history over HTTP and NATS, paged.
func TestControlAPIHistory(t *testing.T) {
	natsAddr := freeAddr(t)
	p := startGateway(t, baseArgs("-nats-listen", natsAddr, "-instance-id", "h", "-history", "-data-dir", t.TempDir(), "-api-key", ctlKey)...)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	alice := dialClient(t, p.Addr, "alice")
	alice.join("log")
	for i := 1; i <= 3; i++ {
		id := "m" + strconv.Itoa(i)
		alice.send(map[string]any{"type": "message", "room": "log", "data": map[string]int{"n": i}, "id": id})
		for m := readObj(t, alice); m["type"] != "ack" || m["id"] != id; m = readObj(t, alice) {
		}
	}
	check := func(what string, got map[string]any, wantN []float64, head float64) {
		t.Helper()
		msgs, _ := got["messages"].([]any)
		if got["seq"] != head || len(msgs) != len(wantN) {
			t.Fatalf("%s: %v, want %d messages and seq %v", what, got, len(wantN), head)
		}
		for i, raw := range msgs {
			m := raw.(map[string]any)
			data, _ := m["data"].(map[string]any)
			if m["room"] != "log" || m["from"] != "alice" || data["n"] != wantN[i] || m["seq"] == nil || m["id"] == "" || m["ts"] == nil {
				t.Fatalf("%s: message %d %v, want n=%v from alice", what, i, m, wantN[i])
			}
		}
	}
	all := ctlOK(t, p, "GET", "/api/history?room=log", "")
	check("HTTP history", all, []float64{1, 2, 3}, 3)
	page := ctlOK(t, p, "GET", "/api/history?room=log&since=0&limit=2", "")
	check("HTTP history page 1", page, []float64{1, 2}, 3)
	second := page["messages"].([]any)[1].(map[string]any)["seq"].(float64)
	got, hdr := ctlNATS(t, nc, "history", `{"room":"log","since":`+strconv.Itoa(int(second))+`,"limit":2}`)
	if hdr != "" {
		t.Fatalf("NATS history: %s %v", hdr, got)
	}
	check("NATS history page 2", got, []float64{3}, 3)
	check("empty room", ctlOK(t, p, "GET", "/api/history?room=empty&since=0", ""), nil, 0)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestControlAPIWindow: an answer comes as soon as every instance answered,
// well inside -presence-window; an instance that cannot answer (stopped
// with SIGSTOP) is left out once the window passed, and the answer comes
// then, not later.
func TestControlAPIWindow(t *testing.T) {
	a, b, _ := startControlPair(t) // -presence-window 3s
	start := time.Now()
	ctlOK(t, a, "GET", "/api/info", "")
	if d := time.Since(start); d >= 3*time.Second {
		t.Fatalf("info with both instances up took %v: it waited for the window", d)
	}
	b.Signal(syscall.SIGSTOP)
	defer b.Signal(syscall.SIGCONT)
	waitFor(t, 5*time.Second, func() string { // the signal is asynchronous
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(b.cmd.Process.Pid) + "/stat")
		if err != nil {
			t.Skipf("cannot see whether b stopped: %v", err)
		}
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) == 0 || f[0] != "T" {
			return "b not stopped yet: " + string(stat)
		}
		return ""
	})
	start = time.Now()
	got := ctlOK(t, a, "GET", "/api/info", "")
	d := time.Since(start)
	if inst, _ := got["instances"].([]any); len(inst) != 1 || inst[0].(map[string]any)["id"] != "a" {
		t.Fatalf("info with b stopped: %v, want a alone", got)
	}
	if d < 3*time.Second || d > 8*time.Second {
		t.Fatalf("info with b stopped took %v, want the 3s window (and not much more)", d)
	}
}
