package harness

import (
	"os"
	"testing"
)

// TestUWSScenarios runs echo and broadcast against the uWebSockets.js peer.
// It installs uws-pack with npm on first use (the npm registry, Node.js),
// so it runs only when asked: WSBENCH_UWS=1.
func TestUWSScenarios(t *testing.T) {
	if os.Getenv("WSBENCH_UWS") != "1" {
		t.Skip("set WSBENCH_UWS=1 to install and run the uWebSockets.js peer")
	}
	e := testEnv(t, "uws")
	r := runOne(t, e, "echo", "-conns", "6", "-rate", "300", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Sent < 250 || r.Received != r.Sent || r.Lost != 0 || r.Duplicates != 0 {
		t.Fatalf("echo: sent %d received %d lost %d dups %d notes %v", r.Sent, r.Received, r.Lost, r.Duplicates, r.Notes)
	}
	// ws.publish skips the publisher: 7 connections, each message reaches 6
	r = runOne(t, e, "broadcast", "-receivers", "5", "-publishers", "2", "-rate", "100", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Expected != r.Sent*6 || r.Received != r.Expected || r.Duplicates != 0 {
		t.Fatalf("broadcast: sent %d expected %d received %d dups %d notes %v", r.Sent, r.Expected, r.Received, r.Duplicates, r.Notes)
	}
}
