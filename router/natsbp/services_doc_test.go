package natsbp

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	clientwire "github.com/wsgate/wsgate/wire"
)

// TestServicesDocExample: docs/services.md shows examples/rpc-service
// exactly, and that service, built and run as its own process against a
// real NATS server, answers a gateway's clients as the page says.
func TestServicesDocExample(t *testing.T) {
	src, err := os.ReadFile("../../examples/rpc-service/main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/services.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```\n") {
		t.Fatal("docs/services.md does not show examples/rpc-service/main.go as it is")
	}
	if testing.Short() {
		t.Skip("builds and runs the example service")
	}
	bin := filepath.Join(t.TempDir(), "rpc-service")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/rpc-service").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := startNATS(t, 0)
	cmd := exec.Command(bin, "-nats", ns.ClientURL())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "answering gw.rpc.orders.get") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the example service did not say it was answering")
	}

	in := startInstanceWith(t, "doc", Options{URLs: []string{ns.ClientURL()}}, 1, nil)
	for _, codec := range []clientwire.Codec{clientwire.CodecJSON, clientwire.CodecMsgpack} {
		alice, _ := dialRPC(t, in, "alice", codec, auth.Claims{RPC: []string{"orders.*"}})
		alice.send(map[string]any{"type": "rpc", "method": "orders.get", "data": map[string]any{"id": 7}, "id": "r1"})
		m := alice.read()
		if d, _ := m["data"].(map[string]any); m["type"] != "rpc:result" || m["id"] != "r1" || d["status"] != "shipped" || d["owner"] != "alice" {
			t.Fatalf("%s: %v", codec, m)
		}
		alice.send(map[string]any{"type": "rpc", "method": "orders.get", "data": map[string]any{"id": 8}, "id": "r2"})
		if m := expectError(t, alice, "service_error", "r2"); m["reason"] != "not_found" || m["message"] != "no such order" {
			t.Fatalf("%s: %v", codec, m)
		}
		bob, _ := dialRPC(t, in, "bob", codec, auth.Claims{})
		bob.send(map[string]any{"type": "rpc", "method": "orders.get", "data": map[string]any{"id": 7}, "id": "b1"})
		if m := expectError(t, bob, "service_error", "b1"); m["reason"] != "not_found" {
			t.Fatalf("%s: another user's order: %v", codec, m)
		}
		bob.send(map[string]any{"type": "rpc", "method": "orders.get", "data": "seven", "id": "b2"})
		if m := expectError(t, bob, "service_error", "b2"); m["reason"] != "bad_request" {
			t.Fatalf("%s: %v", codec, m)
		}
	}
}
