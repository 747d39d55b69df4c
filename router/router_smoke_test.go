package router

import (
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
)

func TestRoomMessageSmoke(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	alice := g.dial(token(t, auth.Claims{Sub: "alice"}))
	alice.expect("auth:ok")
	bob := g.dial("")
	bob.send(map[string]any{"type": "auth", "token": token(t, auth.Claims{Sub: "bob"})})
	bob.expect("auth:ok")
	for _, c := range []*wsClient{alice, bob} {
		c.send(`{"type":"join","room":"lobby"}`)
		c.expect("joined")
	}
	alice.send(`{"type":"message","room":"lobby","data":{"text":"hi"},"id":"c1"}`)
	alice.expect("ack")
	m := bob.expect("message")
	if m["from"] != "alice" || m["room"] != "lobby" {
		t.Fatalf("delivery %v", m)
	}
	if d, _ := m["data"].(map[string]any); d["text"] != "hi" {
		t.Fatalf("data %v", m["data"])
	}
}
