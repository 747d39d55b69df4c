package natsbp

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/router"
	clientwire "github.com/wsgate/wsgate/wire"
)

// TestServicesDocExample: docs/services.md shows examples/service exactly,
// and that service, built and run as its own process against a real NATS
// server, serves a gateway started with -events and -hook-join 'vip.*' as
// the page says: it answers the rpc, allows and denies vip joins, logs the
// events, and disconnects a user through the control API.
func TestServicesDocExample(t *testing.T) {
	src, err := os.ReadFile("../../examples/service/main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/services.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```\n") {
		t.Fatal("docs/services.md does not show examples/service/main.go as it is")
	}
	if testing.Short() {
		t.Skip("builds and runs the example service")
	}
	bin := filepath.Join(t.TempDir(), "service")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/service").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := startNATS(t, 0)
	svc := startExampleService(t, bin, ns.ClientURL())
	svc.waitLine(t, "service: ready on ")

	in := startInstanceWith(t, "doc", Options{URLs: []string{ns.ClientURL()}}, 1, func(o *router.Options) {
		o.Events = true
		o.HookJoin = []string{"vip.*"}
		o.HookTimeout = 10 * time.Second // a loaded machine must not turn an answer into unavailable
	})

	// The rpc, in a text and a binary encoding.
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

	// Events: the service logs a connection, and counts joins per room.
	ann, _ := dialRPC(t, in, "vip-ann", clientwire.CodecJSON, auth.Claims{})
	svc.waitLine(t, "event: vip-ann connected (conn ")
	ann.send(map[string]any{"type": "join", "room": "lobby", "id": "j1"}) // outside -hook-join: never asks
	if m := ann.read(); m["type"] != "joined" || m["room"] != "lobby" || m["id"] != "j1" {
		t.Fatalf("vip-ann lobby: %v", m)
	}
	// The join hook allows a vip- user into a vip room.
	ann.send(map[string]any{"type": "join", "room": "vip.lounge", "id": "j2"})
	if m := ann.read(); m["type"] != "joined" || m["room"] != "vip.lounge" || m["id"] != "j2" {
		t.Fatalf("vip-ann vip.lounge: %v", m)
	}
	svc.waitLine(t, "event: vip-ann joined vip.lounge (1 joins so far)")
	ann.send(map[string]any{"type": "leave", "room": "lobby", "id": "l1"})
	if m := ann.read(); m["type"] != "left" || m["room"] != "lobby" {
		t.Fatalf("vip-ann leave lobby: %v", m)
	}
	svc.waitLine(t, "event: vip-ann left lobby")

	// ...denies anyone else, with the service's reason; the third refusal
	// has the service disconnect the user with reconnect false (4502).
	mallory, _ := dialRPC(t, in, "mallory", clientwire.CodecJSON, auth.Claims{})
	for i, id := range []string{"m1", "m2"} {
		mallory.send(map[string]any{"type": "join", "room": "vip.lounge", "id": id})
		if m := expectError(t, mallory, "forbidden", id); m["message"] != "vip rooms are for vip members" {
			t.Fatalf("mallory's join %d: %v", i+1, m)
		}
	}
	// The third refusal and the disconnect take different paths (the hook's
	// answer, the control API's request): the refusal may or may not reach
	// the client before the 4502 close.
	mallory.send(map[string]any{"type": "join", "room": "vip.lounge", "id": "m3"})
	var ce *websocket.CloseError
	for {
		_ = mallory.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, b, err := mallory.conn.ReadMessage()
		if err == nil {
			var m map[string]any
			if jerr := json.Unmarshal(b, &m); jerr != nil || m["type"] != "error" || m["code"] != "forbidden" || m["id"] != "m3" {
				t.Fatalf("mallory's third join: %s, want error forbidden or the close", b)
			}
			continue
		}
		if !errors.As(err, &ce) || ce.Code != int(router.CloseServiceRevoked) || ce.Text != "too many attempts to enter vip rooms" {
			t.Fatalf("mallory after three refusals: %v, want close 4502", err)
		}
		break
	}
	// The control API's answer and the disconnect event race: either first.
	svc.waitLine(t, "service: disconnected mallory (1 connections): too many attempts to enter vip rooms",
		"event: mallory disconnected (conn ")
	// vip-ann, refused nothing, is still in and still served.
	ann.send(map[string]any{"type": "rpc", "method": "orders.get", "data": map[string]any{"id": 7}, "id": "a1"})
	if m := expectError(t, ann, "service_error", "a1"); m["reason"] != "not_found" {
		t.Fatalf("vip-ann after mallory's ban: %v", m)
	}
}

// exampleService is the example service running as its own process; its
// stderr lines arrive on lines.
type exampleService struct {
	lines chan string
}

// startExampleService runs bin against the NATS server at url until the
// test ends.
func startExampleService(t *testing.T, bin, url string) *exampleService {
	t.Helper()
	cmd := exec.Command(bin, "-nats", url)
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
	s := &exampleService{lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// waitLine reads the service's stderr until, for each of wants, a line
// contained it, in any order; other lines are passed over.
func (s *exampleService) waitLine(t *testing.T, wants ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range wants {
		missing[w] = true
	}
	deadline := time.After(30 * time.Second)
	var seen []string
	for len(missing) > 0 {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("the example service exited before saying %q; it said:\n%s", wantedLines(missing), strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			for w := range missing {
				if strings.Contains(line, w) {
					delete(missing, w)
				}
			}
		case <-deadline:
			t.Fatalf("the example service did not say %q within 30s; it said:\n%s", wantedLines(missing), strings.Join(seen, "\n"))
		}
	}
}

// wantedLines lists the lines still awaited, for a failure message.
func wantedLines(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
