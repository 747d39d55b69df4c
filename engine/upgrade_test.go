package engine

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The HTTP side of the engine: the upgrade parsed on the loop, its
// refusals, timeouts and limits (PROTOCOL.md sections 1 and 2).

func upgradeOpts() Options {
	return Options{
		HandshakeTimeout: 300 * time.Millisecond,
		CloseTimeout:     300 * time.Millisecond,
		TickInterval:     10 * time.Millisecond,
		MaxHeaderBytes:   1024,
	}
}

// segmentPause lets one write leave and be read before the next: the only
// way to make the server see an upgrade head in pieces (nothing observable
// changes on the server until the head is complete).
const segmentPause = 15 * time.Millisecond

func TestUpgradeSplitAcrossSegments(t *testing.T) {
	opts := upgradeOpts()
	opts.HandshakeTimeout = 5 * time.Second // the whole head, pauses included, must fit
	e := startEngine(t, opts, EchoHandler{})
	req := upgradeRequest("/ws")
	at := func(s string) int { // offset just after the first s
		i := strings.Index(req, s)
		if i < 0 {
			t.Fatalf("%q not in request", s)
		}
		return i + len(s)
	}
	end := len(req)
	cases := []struct {
		name string
		cuts []int
	}{
		{name: "inside the request line", cuts: []int{2, at("GET /w"), at("HTTP/1")}},
		{name: "inside a header name and value", cuts: []int{at("Upgr"), at("Sec-WebSocket-Key: dGhl")}},
		{name: "between CR and LF", cuts: []int{at("HTTP/1.1\r"), at("Upgrade: websocket\r")}},
		{name: "inside the final blank line", cuts: []int{end - 3, end - 2, end - 1}},
		{name: "byte by byte over the last header", cuts: func() []int {
			var cuts []int
			for i := at("Sec-WebSocket-Version"); i < end; i++ {
				cuts = append(cuts, i)
			}
			return cuts
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, e)
			prev := 0
			for _, cut := range append(tc.cuts, end) {
				c.write([]byte(req[prev:cut]))
				prev = cut
				time.Sleep(segmentPause)
			}
			resp := c.readResponse()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("Sec-WebSocket-Accept %q", got)
			}
			c.writeFrame(opText, []byte("after split upgrade"))
			c.expectMessage(opText, []byte("after split upgrade"))
		})
	}
}

func TestUpgradeWithFramesInOneWrite(t *testing.T) {
	e := startEngine(t, upgradeOpts(), EchoHandler{})
	c := dialRaw(t, e)
	c.write(catFrames([]byte(upgradeRequest("/ws")), mf(true, opText, "first"), mf(true, opPing, "p"), mf(true, opBinary, "second")))
	if resp := c.readResponse(); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	c.expectMessage(opText, []byte("first"))
	c.expectMessage(opPong, []byte("p"))
	c.expectMessage(opBinary, []byte("second"))
	c.writeFrame(opClose, closePayload(1000, ""))
	c.expectClose(t, 1000)
}

// TestHandshakeTimeout: a connection that never completes its upgrade
// request is closed after HandshakeTimeout, counted from the TCP accept,
// however slowly it keeps sending (slowloris).
func TestHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := startEngine(t, upgradeOpts(), EchoHandler{})
	half := upgradeRequest("/ws")[:60]

	t.Run("half a request then silence", func(t *testing.T) {
		before := sumStats(t, e).HandshakeTimeouts
		c := dialRaw(t, e)
		start := time.Now()
		c.write([]byte(half))
		c.expectEOF(t, timeout+2*time.Second)
		if el := time.Since(start); el < timeout/2 {
			t.Fatalf("closed after %v, before the %v handshake timeout", el, timeout)
		}
		checkFor(t, time.Second, func() error {
			if got := sumStats(t, e).HandshakeTimeouts; got != before+1 {
				return fmt.Errorf("HandshakeTimeouts %d, want %d", got, before+1)
			}
			return nil
		})
	})

	t.Run("nothing at all", func(t *testing.T) {
		c := dialRaw(t, e)
		c.expectEOF(t, timeout+2*time.Second)
	})

	t.Run("trickling bytes does not extend the deadline", func(t *testing.T) {
		c := dialRaw(t, e)
		closed := make(chan error, 1)
		go func() {
			_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [64]byte
			n, err := c.conn.Read(b[:])
			if n > 0 {
				err = fmt.Errorf("unexpected response %q", b[:n])
			}
			closed <- err
		}()
		start := time.Now()
		req := upgradeRequest("/ws")
		req = req[:len(req)-2] // never complete
		for i := 0; i < len(req); i++ {
			select {
			case err := <-closed:
				if err != nil && !isClosedErr(err) {
					t.Fatalf("read: %v", err)
				}
				if el := time.Since(start); el > timeout+time.Second {
					t.Fatalf("closed only after %v of trickling, handshake timeout %v", el, timeout)
				}
				return
			default:
			}
			_, _ = c.conn.Write([]byte{req[i]})
			time.Sleep(30 * time.Millisecond)
		}
		t.Fatalf("connection trickling a request still open after %v (handshake timeout %v)", time.Since(start), timeout)
	})
}

// TestUpgradeRefusals: every malformed or unwanted request gets an HTTP
// error response and a close, never a hang, and is counted.
func TestUpgradeRefusals(t *testing.T) {
	e := startEngine(t, upgradeOpts(), EchoHandler{})
	valid := upgradeRequest("/ws")
	without := func(header string) string {
		var lines []string
		for _, l := range strings.Split(valid, "\r\n") {
			if !strings.HasPrefix(l, header+":") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\r\n")
	}
	replace := func(old, new string) string { return strings.Replace(valid, old, new, 1) }
	cases := []struct {
		name    string
		request string
		status  int
		headers map[string]string // expected response headers
	}{
		{name: "plain GET without Upgrade", request: "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n", status: 426, headers: map[string]string{"Sec-WebSocket-Version": "13", "Upgrade": "websocket"}},
		{name: "plain GET of another path", request: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", status: 404},
		{name: "upgrade on a wrong path", request: upgradeRequest("/other"), status: 404},
		{name: "upgrade on a path with a suffix", request: upgradeRequest("/ws/x"), status: 404},
		{name: "POST with upgrade headers", request: replace("GET ", "POST "), status: 405},
		{name: "POST without upgrade headers", request: "POST /ws HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", status: 426},
		{name: "bad Sec-WebSocket-Version", request: replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), status: 426, headers: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "missing Sec-WebSocket-Version", request: without("Sec-WebSocket-Version"), status: 400},
		{name: "missing Sec-WebSocket-Key", request: without("Sec-WebSocket-Key"), status: 400},
		{name: "short Sec-WebSocket-Key", request: replace(testKey, "c2hvcnQ="), status: 400},
		{name: "missing Host", request: without("Host"), status: 400},
		{name: "missing Connection", request: without("Connection"), status: 400},
		{name: "Upgrade: h2c", request: replace("Upgrade: websocket", "Upgrade: h2c"), status: 400},
		{name: "Connection: keep-alive", request: replace("Connection: Upgrade", "Connection: keep-alive"), status: 400},
		{name: "HTTP/1.0", request: replace("HTTP/1.1", "HTTP/1.0"), status: 505},
		{name: "malformed header line", request: replace("Host: localhost\r\n", "Host: localhost\r\nno colon here\r\n"), status: 400},
		{name: "garbage", request: "\x00\x01\x02garbage\xff\xfe\r\n\r\n", status: 400},
		{name: "TLS client hello", request: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", status: 400},
		{name: "empty request line", request: "\r\n\r\n", status: 400},
		{name: "oversize head without the blank line", request: "GET /ws HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 2000), status: 431},
		{name: "complete oversize head", request: upgradeRequest("/ws", "X-Pad: "+strings.Repeat("a", 2000)), status: 431},
		{name: "head one byte over the limit", request: padRequest(t, 1025), status: 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := sumStats(t, e)
			c := dialRaw(t, e)
			c.write([]byte(tc.request))
			resp := c.readResponse()
			if resp.StatusCode != tc.status {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			c.expectEOF(t, time.Second)
			after := sumStats(t, e)
			if after.Upgrades != before.Upgrades {
				t.Errorf("Upgrades moved from %d to %d", before.Upgrades, after.Upgrades)
			}
			if got, was := after.RefusalCount(tc.status), before.RefusalCount(tc.status); got != was+1 {
				t.Errorf("RefusalCount(%d) %d, want %d", tc.status, got, was+1)
			}
		})
	}

	t.Run("head exactly at the limit upgrades", func(t *testing.T) {
		before := sumStats(t, e)
		c := dialRaw(t, e)
		c.write([]byte(padRequest(t, 1024)))
		if resp := c.readResponse(); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		if after := sumStats(t, e); after.Upgrades != before.Upgrades+1 {
			t.Fatalf("Upgrades %d, want %d", after.Upgrades, before.Upgrades+1)
		}
	})

	t.Run("oversize head in pieces", func(t *testing.T) {
		c := dialRaw(t, e)
		c.write([]byte("GET /ws HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 800)))
		time.Sleep(segmentPause)
		c.write([]byte(strings.Repeat("b", 800)))
		if resp := c.readResponse(); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
		c.expectEOF(t, time.Second)
	})
}

// padRequest is a valid upgrade request whose head is exactly n bytes.
func padRequest(t testing.TB, n int) string {
	t.Helper()
	base := len(upgradeRequest("/ws", "X-Pad: "))
	if n < base {
		t.Fatalf("padRequest(%d): minimum %d", n, base)
	}
	r := upgradeRequest("/ws", "X-Pad: "+strings.Repeat("p", n-base))
	if len(r) != n {
		t.Fatalf("padRequest: %d bytes, want %d", len(r), n)
	}
	return r
}

func TestUpgradeOrigin(t *testing.T) {
	opts := upgradeOpts()
	opts.AllowedOrigins = []string{"app.example.com", "*.trusted.org"}
	e := startEngine(t, opts, EchoHandler{})
	cases := []struct {
		name   string
		origin string // "" sends no Origin header
		status int
	}{
		{name: "exact host", origin: "https://app.example.com", status: 101},
		{name: "exact host with port", origin: "https://app.example.com:8443", status: 101},
		{name: "exact host, other case", origin: "https://APP.Example.com", status: 101},
		{name: "glob", origin: "https://x.trusted.org", status: 101},
		{name: "no Origin (non-browser client)", origin: "", status: 101},
		{name: "other site", origin: "https://evil.com", status: 403},
		{name: "suffix attack", origin: "https://app.example.com.evil.com", status: 403},
		{name: "prefix attack", origin: "https://evilapp.example.com", status: 403},
		{name: "glob base domain", origin: "https://trusted.org", status: 403},
		{name: "glob suffix attack", origin: "https://x.trusted.org.evil.com", status: 403},
		{name: "null origin", origin: "null", status: 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := sumStats(t, e)
			var extra []string
			if tc.origin != "" {
				extra = append(extra, "Origin: "+tc.origin)
			}
			c := dialRaw(t, e)
			c.write([]byte(upgradeRequest("/ws", extra...)))
			resp := c.readResponse()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			after := sumStats(t, e)
			if tc.status == 101 {
				if after.Upgrades != before.Upgrades+1 {
					t.Fatalf("Upgrades %d, want %d", after.Upgrades, before.Upgrades+1)
				}
				c.writeFrame(opText, []byte("ok"))
				c.expectMessage(opText, []byte("ok"))
				return
			}
			c.expectEOF(t, time.Second)
			if got := after.RefusalCount(403); got != before.RefusalCount(403)+1 {
				t.Fatalf("RefusalCount(403) %d, want %d", got, before.RefusalCount(403)+1)
			}
		})
	}
}

func TestUpgradeMaxConns(t *testing.T) {
	opts := upgradeOpts()
	opts.MaxConns = 2
	e := startEngine(t, opts, EchoHandler{})
	c1, _ := dialUpgraded(t, e)
	dialUpgraded(t, e)

	// The third connection is shed at accept, before it sends a byte: a
	// flood of idle connections never gets to hold descriptors.
	c3 := dialRaw(t, e)
	if resp := c3.readResponse(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: status %d, want 503", resp.StatusCode)
	}
	c3.expectEOF(t, time.Second)
	if st := e.AcceptStats(); st.ShedMaxConns != 1 || st.Shed() != 1 {
		t.Fatalf("accept stats %+v, want one connection shed for max-conns", st)
	}

	// A slot frees when a connection leaves.
	c1.writeFrame(opClose, closePayload(1000, ""))
	c1.expectClose(t, 1000)
	checkFor(t, ioTimeout, func() error {
		if n := e.OpenConns(); n != 1 {
			return fmt.Errorf("%d open connections", n)
		}
		return nil
	})
	c4, _ := dialUpgraded(t, e)
	c4.writeFrame(opText, []byte("room again"))
	c4.expectMessage(opText, []byte("room again"))
}

// acceptRecord is what recordingHandler saw in one Accept (copied: the
// request's slices are valid only during the call).
type acceptRecord struct {
	path, query, token, auth, origin, host, remote string
	protocols                                      []string
}

// recordingHandler echoes, records every Accept, refuses token "bad" with
// 401 and picks gw.json when it is offered.
type recordingHandler struct {
	EchoHandler
	mu   sync.Mutex
	seen []acceptRecord
}

func (h *recordingHandler) Accept(_ *Conn, req *Request) Decision {
	r := acceptRecord{
		path:   string(req.Path),
		query:  string(req.Query),
		token:  string(req.QueryValue("token")),
		auth:   string(req.Authorization),
		origin: string(req.Origin),
		host:   string(req.Host),
		remote: req.RemoteAddr,
	}
	for _, p := range req.Protocols {
		r.protocols = append(r.protocols, string(p))
	}
	h.mu.Lock()
	h.seen = append(h.seen, r)
	h.mu.Unlock()
	if r.token == "bad" || r.auth == "Bearer bad" {
		return Decision{Status: http.StatusUnauthorized, Reason: "bad token"}
	}
	if slices.Contains(r.protocols, "gw.json") {
		return Decision{Protocol: "gw.json"}
	}
	return Decision{}
}

func (h *recordingHandler) last(t testing.TB) acceptRecord {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		t.Fatal("Accept was not called")
	}
	return h.seen[len(h.seen)-1]
}

func TestUpgradeAccept(t *testing.T) {
	h := &recordingHandler{}
	e := startEngine(t, upgradeOpts(), h)
	cases := []struct {
		name     string
		path     string
		extra    []string
		status   int
		protocol string // expected Sec-WebSocket-Protocol
		check    func(t *testing.T, r acceptRecord)
		wantBody string
	}{
		{name: "subprotocol picked from a list", path: "/ws", extra: []string{"Sec-WebSocket-Protocol: chat, gw.json"}, status: 101, protocol: "gw.json",
			check: func(t *testing.T, r acceptRecord) {
				if !slices.Equal(r.protocols, []string{"chat", "gw.json"}) {
					t.Errorf("protocols %q", r.protocols)
				}
			}},
		{name: "subprotocols in two headers", path: "/ws", extra: []string{"Sec-WebSocket-Protocol: gw.msgpack", "Sec-WebSocket-Protocol: gw.json"}, status: 101, protocol: "gw.json",
			check: func(t *testing.T, r acceptRecord) {
				if !slices.Equal(r.protocols, []string{"gw.msgpack", "gw.json"}) {
					t.Errorf("protocols %q", r.protocols)
				}
			}},
		{name: "no subprotocol offered", path: "/ws", status: 101, protocol: ""},
		{name: "only unknown subprotocols", path: "/ws", extra: []string{"Sec-WebSocket-Protocol: chat"}, status: 101, protocol: ""},
		{name: "query and authorization passed", path: "/ws?room=lobby&token=abc.def-ghi", extra: []string{"Authorization: Bearer xyz", "Origin: https://site.example"}, status: 101,
			check: func(t *testing.T, r acceptRecord) {
				want := acceptRecord{path: "/ws", query: "room=lobby&token=abc.def-ghi", token: "abc.def-ghi", auth: "Bearer xyz", origin: "https://site.example", host: "localhost", remote: r.remote}
				if !strings.HasPrefix(r.remote, "127.0.0.1:") {
					t.Errorf("remote %q", r.remote)
				}
				r.protocols = nil
				if fmt.Sprint(r) != fmt.Sprint(want) {
					t.Errorf("Accept saw %+v, want %+v", r, want)
				}
			}},
		{name: "refused token in query", path: "/ws?token=bad", status: 401, wantBody: "bad token"},
		{name: "refused token in header", path: "/ws", extra: []string{"Authorization: Bearer bad"}, status: 401, wantBody: "bad token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := sumStats(t, e)
			c := dialRaw(t, e)
			c.write([]byte(upgradeRequest(tc.path, tc.extra...)))
			resp := c.readResponse()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.check != nil {
				tc.check(t, h.last(t))
			}
			after := sumStats(t, e)
			if tc.status != 101 {
				body, _ := io.ReadAll(resp.Body)
				if !bytes.Contains(body, []byte(tc.wantBody)) {
					t.Errorf("body %q, want %q", body, tc.wantBody)
				}
				c.expectEOF(t, time.Second)
				if got := after.RefusalCount(tc.status); got != before.RefusalCount(tc.status)+1 {
					t.Errorf("RefusalCount(%d) %d, want %d", tc.status, got, before.RefusalCount(tc.status)+1)
				}
				return
			}
			if vals := resp.Header.Values("Sec-WebSocket-Protocol"); tc.protocol == "" && len(vals) != 0 || tc.protocol != "" && !slices.Equal(vals, []string{tc.protocol}) {
				t.Fatalf("Sec-WebSocket-Protocol %q, want %q", vals, tc.protocol)
			}
			if after.Upgrades != before.Upgrades+1 {
				t.Fatalf("Upgrades %d, want %d", after.Upgrades, before.Upgrades+1)
			}
			c.writeFrame(opText, []byte("accepted"))
			c.expectMessage(opText, []byte("accepted"))
		})
	}
}

func TestRequestQueryValue(t *testing.T) {
	cases := []struct {
		query, name, want string
	}{
		{query: "token=abc", name: "token", want: "abc"},
		{query: "a=1&token=abc&b=2", name: "token", want: "abc"},
		{query: "xtoken=1&token=2", name: "token", want: "2"},
		{query: "token=", name: "token", want: ""},
		{query: "token", name: "token", want: ""},
		{query: "tok=1", name: "token", want: ""},
		{query: "", name: "token", want: ""},
		{query: "token=a=b", name: "token", want: "a=b"},
		{query: "token=first&token=second", name: "token", want: "first"},
	}
	for _, tc := range cases {
		r := Request{Query: []byte(tc.query)}
		if got := string(r.QueryValue(tc.name)); got != tc.want {
			t.Errorf("QueryValue(%q) of %q = %q, want %q", tc.name, tc.query, got, tc.want)
		}
	}
}

// isClosedErr reports whether err from a read means the peer closed.
func isClosedErr(err error) bool {
	return err == io.EOF || strings.Contains(err.Error(), "connection reset")
}
