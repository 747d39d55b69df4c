package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Fuzzing the upgrade path. FuzzUpgrade goes through a real socket (one
// engine per fuzz process): whatever a client sends, the engine must not
// panic, must answer a complete head with an HTTP response, and must end the
// connection by itself unless it upgraded. FuzzParseUpgrade calls
// Engine.upgrade directly with a fake gnet.Conn, fast enough to explore the
// parser, and checks the result against the bytes.
//
//	go test ./engine/ -run='^$' -fuzz=FuzzUpgrade -fuzztime=20s
//	go test ./engine/ -run='^$' -fuzz=FuzzParseUpgrade -fuzztime=20s

const fuzzMaxHeader = 1024

// upgradeSeeds are requests of every kind the engine must handle, for
// FuzzParseUpgrade (FuzzUpgrade has the like in testdata/fuzz/FuzzUpgrade).
func upgradeSeeds() []string {
	valid := upgradeRequest("/ws")
	return []string{
		valid,
		upgradeRequest("/ws?token=abc&room=x", "Authorization: Bearer t", "Origin: https://a.example", "Sec-WebSocket-Protocol: gw.json, gw.msgpack"),
		upgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10"),
		upgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99, x-webkit-deflate-frame"),
		valid + string(clientFrame(true, 0, opText, true, []byte("hi"))),
		valid[:40],
		valid[:len(valid)-1],
		upgradeRequest("/other"),
		strings.Replace(valid, "GET", "POST", 1),
		strings.Replace(valid, "13", "8", 1),
		strings.Replace(valid, "HTTP/1.1", "HTTP/1.0", 1),
		"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ws HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
		"GET /ws HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 1100),
		upgradeRequest("/ws", "X-Pad: "+strings.Repeat("a", 1100)),
		"GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\n\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
		"GET  HTTP/1.1\r\n\r\n",
		valid + valid,
	}
}

var errHung = errors.New("connection neither upgraded nor closed")

// exchangeRaw writes in to a fresh connection, half-closes it (so the
// server sees the end of an incomplete head at once instead of waiting for
// its handshake timeout) and reads until the server closes it, upgrades it,
// or timeout passes.
func exchangeRaw(addr string, in []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(in); err != nil {
		// The server may close before taking it all; it must never stop
		// reading an open connection, though.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errHung
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if bytes.HasPrefix(out, []byte("HTTP/1.1 101 ")) {
			return out, nil // upgraded: the connection stays open by design
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out, errHung
			}
			return out, nil // EOF or reset: the server closed
		}
	}
}

func FuzzUpgrade(f *testing.F) {
	// Inputs without a complete head end with the client's half-close, not
	// the handshake timeout (TestHandshakeTimeout covers that), so the
	// timeouts can be generous: a busy machine never trips them before the
	// engine has read the head.
	opts := Options{
		HandshakeTimeout: 5 * time.Second,
		CloseTimeout:     5 * time.Second,
		MaxHeaderBytes:   fuzzMaxHeader,
		Compress:         true,
		AllowedOrigins:   []string{"a.example"},
	}
	e := startEngine(f, opts, EchoHandler{}) // seeds: testdata/fuzz/FuzzUpgrade
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := exchangeRaw(e.Addr(), in, 10*time.Second)
		if err != nil {
			t.Fatalf("%v; got %q", err, out)
		}
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) {
			t.Fatalf("response does not start with a status line: %q", out)
		}
		if complete := bytes.Contains(in, headerEnd) || len(in) > fuzzMaxHeader; complete && len(out) == 0 {
			t.Fatalf("no response to a complete or oversize head")
		}
	})
}

// fakeGnetConn is the little of gnet.Conn that Engine.upgrade touches; any
// other method panics (nil embedded interface), which the fuzzer would show.
type fakeGnetConn struct{ gnet.Conn }

func (fakeGnetConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}
}

func FuzzParseUpgrade(f *testing.F) {
	opts := Options{
		Addr:           "127.0.0.1:0",
		Loops:          1,
		MaxHeaderBytes: fuzzMaxHeader,
		Compress:       true,
		AllowedOrigins: []string{"a.example"},
	}
	e, err := New(opts, EchoHandler{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range upgradeSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		l := &Loop{eng: e, flushAt: e.loops[0].flushAt}
		c := &Conn{gc: fakeGnetConn{}, loop: l, wheelSlot: -1, index: -1}
		c.dec.Init(&e.limits)
		defer c.dec.Release()
		orig := bytes.Clone(in)
		res, n := e.upgrade(c, in)
		if !bytes.Equal(in, orig) {
			t.Fatal("upgrade modified its input")
		}
		var out []byte
		if c.cork != nil {
			out = c.cork.B
		}
		end := bytes.Index(in, headerEnd)
		switch res {
		case upgradeNeedMore:
			if end >= 0 || len(in) > fuzzMaxHeader {
				t.Fatalf("need more with a complete or oversize head (end %d, len %d)", end, len(in))
			}
			if len(out) != 0 || n != 0 {
				t.Fatalf("need more but wrote %q, consumed %d", out, n)
			}
			return
		case upgradeDone:
			if n != end+len(headerEnd) {
				t.Fatalf("upgraded with %d bytes consumed, head is %d", n, end+len(headerEnd))
			}
			if n > fuzzMaxHeader {
				t.Fatalf("upgraded a %d-byte head over the %d limit", n, fuzzMaxHeader)
			}
		case upgradeRefused:
			if n <= 0 || n > len(in) {
				t.Fatalf("refused with %d of %d bytes consumed", n, len(in))
			}
		default:
			t.Fatalf("result %d", res)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("response %q: %v", out, err)
		}
		switch {
		case res == upgradeDone && resp.StatusCode != http.StatusSwitchingProtocols:
			t.Fatalf("upgraded with status %d", resp.StatusCode)
		case res == upgradeDone && resp.Header.Get("Sec-WebSocket-Accept") == "":
			t.Fatalf("101 without Sec-WebSocket-Accept: %q", out)
		case res == upgradeRefused && (resp.StatusCode < 400 || resp.StatusCode > 599):
			t.Fatalf("refused with status %d", resp.StatusCode)
		}
		if res == upgradeRefused {
			body, _ := io.ReadAll(resp.Body)
			if resp.ContentLength != int64(len(body)) {
				t.Fatalf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
			}
		}
	})
}
