package main

import (
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An instance whose NATS is another instance's embedded server (-nats-url)
// loses its backplane when that instance dies. What it then does is what
// docs/operations.md ("While NATS is unreachable") promises: /healthz stays
// 200, /readyz turns 503, connections stay open and answer pings, and a
// client message that needs the backplane is refused with `error
// unavailable` and delivered nowhere, not even to local members of the
// room (all or nothing: the sender knows it was not delivered). Once the
// NATS server is back the instance is ready again and delivers.
func TestNATSDownLocalDelivery(t *testing.T) {
	natsAddr := freeAddr(t)
	a := startGateway(t, baseArgs("-nats-listen", natsAddr, "-instance-id", "a")...)
	b := startGateway(t, "-jwt-secret", testSecret, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-loops", "1",
		"-instance-id", "b", "-nats-url", "nats://"+natsAddr, "-api-key", "k")
	alice, bob := dialClient(t, b.Addr, "alice"), dialClient(t, b.Addr, "bob")
	alice.join("lobby")
	bob.join("lobby")
	sendAndAnswer := func(id string) frameMsg {
		alice.send(map[string]any{"type": "message", "room": "lobby", "data": id, "id": id})
		for {
			m := alice.read()
			if m.ID == id && (m.Type == "ack" || m.Type == "error") {
				return m
			}
		}
	}
	if m := sendAndAnswer("before"); m.Type != "ack" {
		t.Fatalf("with NATS up: %+v", m)
	}
	if m := bob.read(); m.Type != "message" || string(m.Data) != `"before"` {
		t.Fatalf("bob with NATS up: %+v", m)
	}

	a.Signal(syscall.SIGKILL) // its embedded NATS server goes with it
	if _, ok := a.Wait(10 * time.Second); !ok {
		t.Fatal("instance a did not die")
	}
	waitFor(t, 20*time.Second, func() string {
		if code, _, err := b.adminGet("/readyz"); err != nil || code != http.StatusServiceUnavailable {
			return "b's /readyz " + strconv.Itoa(code) + " while its NATS is gone, want 503"
		}
		return ""
	})
	if code, _, err := b.adminGet("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("b's /healthz %d %v while NATS is gone, want 200", code, err)
	}
	if m := sendAndAnswer("during"); m.Type != "error" || m.Code != "unavailable" {
		t.Fatalf("with NATS down: %+v, want error unavailable", m)
	}
	// One loop (-loops 1): anything routed to bob before alice's answer is
	// queued for him ahead of his pong.
	bob.send(map[string]any{"type": "ping", "id": "p"})
	if m := bob.read(); m.Type != "pong" {
		t.Fatalf("bob got %+v before his pong: a refused message was delivered locally", m)
	}
	// New connections authenticate and join; presence needs the other
	// instances and is refused; so is the service API.
	carol := dialClient(t, b.Addr, "carol")
	carol.join("lobby")
	carol.send(map[string]any{"type": "presence", "room": "lobby", "id": "q"})
	if m := carol.read(); m.Type != "error" || m.Code != "unavailable" {
		t.Fatalf("presence with NATS down: %+v, want error unavailable", m)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+b.Admin+"/api/publish", strings.NewReader(`{"room":"lobby","data":"svc"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/api/publish with NATS down: %d, want 503", resp.StatusCode)
	}
	bob.send(map[string]any{"type": "ping", "id": "p2"})
	if m := bob.read(); m.Type != "pong" {
		t.Fatalf("bob got %+v before his pong: a refused service message was delivered locally", m)
	}

	// The NATS server comes back (a new embedded one on the same port):
	// b is ready again and delivers.
	startGateway(t, baseArgs("-nats-listen", natsAddr, "-instance-id", "a2")...)
	waitFor(t, 30*time.Second, func() string {
		if code, _, err := b.adminGet("/readyz"); err != nil || code != http.StatusOK {
			return "b's /readyz " + strconv.Itoa(code) + " after NATS came back, want 200"
		}
		return ""
	})
	if m := sendAndAnswer("after"); m.Type != "ack" {
		t.Fatalf("after NATS came back: %+v", m)
	}
	for {
		m := bob.read()
		if m.Type == "message" {
			if string(m.Data) != `"after"` {
				t.Fatalf("bob after recovery: %+v, want the message sent after", m)
			}
			break
		}
	}
}
