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
	// ws.publish skips the publisher: 7 connections, each message reaches 6
	checkPeerScenarios(t, "uws", 6)
}
