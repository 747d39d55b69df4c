package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
)

// The gateway binary with -token-grace: refresh outcomes and the 4011 close
// of an expired token are served and counted in /metrics (PROTOCOL.md
// section 9).
func TestGatewayTokenGraceAndMetrics(t *testing.T) {
	const grace = 400 * time.Millisecond
	p := startGateway(t, baseArgs("-token-grace", grace.String(), "-tick", "50ms")...)
	mint := func(sub string, exp int64) string {
		tok, err := auth.MintHS256([]byte(testSecret), auth.Claims{Sub: sub, Exp: time.Unix(exp, 0)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	exp := time.Now().Unix() + 2
	c, _, err := websocket.DefaultDialer.Dial("ws://"+p.Addr+"/ws?token="+mint("alice", time.Now().Unix()+3600), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cl := &wsClient{t: t, user: "alice", c: c}
	if m := cl.read(); m.Type != "auth:ok" {
		t.Fatalf("first message %+v", m)
	}
	for _, step := range []struct{ token, want, code string }{
		{mint("mallory", exp), "error", "forbidden"},
		{"not-a-jwt", "error", "unauthorized"},
		{mint("alice", exp), "refreshed", ""},
	} {
		cl.send(map[string]any{"type": "refresh", "token": step.token, "id": "r"})
		if m := cl.read(); m.Type != step.want || m.Code != step.code || m.ID != "r" {
			t.Fatalf("refresh: %+v, want %s %s with id r", m, step.want, step.code)
		}
	}
	if m := cl.read(); m.Type != "token_expired" {
		t.Fatalf("got %+v, want token_expired", m)
	}
	if time.Now().Before(time.Unix(exp, 0)) {
		t.Fatalf("token_expired before exp %d", exp)
	}
	_, err = cl.readErr(5 * time.Second)
	if closeCode(err) != 4011 {
		t.Fatalf("after token_expired: %v, want close 4011", err)
	}
	if time.Now().Before(time.Unix(exp, 0).Add(grace)) {
		t.Fatalf("closed before exp + grace")
	}
	want := []string{
		`wsgate_closes_total{code="4011"} 1`,
		`wsgate_token_refreshes_total{result="ok"} 1`,
		`wsgate_token_refreshes_total{result="forbidden"} 1`,
		`wsgate_token_refreshes_total{result="invalid"} 1`,
		`wsgate_tokens_expired_total 1`,
	}
	waitFor(t, 5*time.Second, func() string {
		code, body, err := p.adminGet("/metrics")
		if err != nil || code != http.StatusOK {
			return fmt.Sprintf("metrics: status %d, %v", code, err)
		}
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				return "metrics lack " + w
			}
		}
		return ""
	})
}

// -token-grace must not be negative.
func TestGatewayTokenGraceNegative(t *testing.T) {
	out, err := runBinary(t, 30*time.Second, baseArgs("-token-grace", "-1s")...)
	if err == nil || !strings.Contains(out, "token-grace") {
		t.Fatalf("-token-grace -1s: err %v, output %q; want a refusal naming the flag", err, out)
	}
}
