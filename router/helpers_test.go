package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
)

// testSecret signs every token in the router tests.
var testSecret = []byte("router-test-secret")

// gateway is one router+engine instance for a test.
type gateway struct {
	t      testing.TB
	eng    *engine.Engine
	router *Router
}

// startGateway runs a router on 127.0.0.1:0; zero options get test-friendly defaults.
func startGateway(t testing.TB, eo engine.Options, ro Options) *gateway {
	t.Helper()
	if eo.Addr == "" {
		eo.Addr = "127.0.0.1:0"
	}
	if eo.Loops == 0 {
		eo.Loops = 2
	}
	if ro.Auth.Secret == nil && ro.Auth.PublicKeyPEM == nil {
		ro.Auth.Secret = testSecret
	}
	r, err := New(ro)
	if err != nil {
		t.Fatalf("router.New: %v", err)
	}
	e, err := engine.New(eo, r)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	if err := r.Bind(e); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if err := e.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return &gateway{t: t, eng: e, router: r}
}

func (g *gateway) url() string { return "ws://" + g.eng.Addr() + "/ws" }

// token mints a test token.
func token(t testing.TB, c auth.Claims) string {
	t.Helper()
	tok, err := auth.MintHS256(testSecret, c, time.Hour)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// wsClient is a gorilla client speaking gw.json.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dial connects with the token on the query (empty token: none).
func (g *gateway) dial(tok string, protocols ...string) *wsClient {
	g.t.Helper()
	u := g.url()
	if tok != "" {
		u += "?token=" + tok
	}
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(u, http.Header{})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		g.t.Fatalf("dial: %v (status %d)", err, status)
	}
	wc := &wsClient{t: g.t, conn: c}
	g.t.Cleanup(func() { _ = c.Close() })
	return wc
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatalf("marshal: %v", err)
		}
	}
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next JSON message as a map.
func (c *wsClient) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("unmarshal %q: %v", b, err)
	}
	return m
}

// expect reads until a message of type typ arrives (failing on others if strict).
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want type %q", m, typ)
	}
	return m
}

func (c *wsClient) String() string { return fmt.Sprint(c.conn.LocalAddr()) }
