package main

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/wsgate/wsgate/router/natsbp"
)

// TestReadyzFollowsNATS runs the gateway against an external NATS server
// that the test stops and starts again: /readyz turns 503 while NATS is
// away, client messages get error unavailable, and both recover.
func TestReadyzFollowsNATS(t *testing.T) {
	ns, err := natsbp.StartEmbedded(natsbp.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	url := ns.ClientURL()
	_, portStr, _ := net.SplitHostPort(url[len("nats://"):])
	port, _ := strconv.Atoi(portStr)
	defer func() { ns.Shutdown() }()

	gw := startGateway(t, "-jwt-secret", testSecret, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-url", url)
	ready := func(want int) func() string {
		return func() string {
			code, body, err := gw.adminGet("/readyz")
			if err != nil || code != want {
				return "readyz " + strconv.Itoa(code) + " " + body
			}
			return ""
		}
	}
	waitFor(t, 5*time.Second, ready(200))
	cl := dialClient(t, gw.Addr, "alice")
	cl.join("ops")

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, 10*time.Second, ready(503))
	cl.send(map[string]any{"type": "message", "room": "ops", "data": 1, "id": "m1"})
	if m := cl.read(); m.Type != "error" || m.Code != "unavailable" || m.ID != "m1" {
		t.Fatalf("with NATS down: %+v, want error unavailable", m)
	}

	ns, err = natsbp.StartEmbedded(natsbp.EmbeddedOptions{Listen: "127.0.0.1:" + strconv.Itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, ready(200))
	// Messages for alice may have been missed while NATS was away: she is told.
	if m := cl.read(); m.Type != "gap" {
		t.Fatalf("after NATS came back: %+v, want gap", m)
	}
	cl.send(map[string]any{"type": "message", "room": "ops", "data": 2, "id": "m2"})
	if m := cl.read(); m.Type != "ack" || m.ID != "m2" {
		t.Fatalf("after NATS came back: %+v, want ack", m)
	}
}
