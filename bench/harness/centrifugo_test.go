package harness

import (
	"os"
	"strings"
	"testing"
)

func TestCentrifugoCodec(t *testing.T) {
	c := &centrifugoCodec{worker: 3}
	const now = int64(1764580000123456789)
	out := string(c.EncodeFor(nil, nil, now, 0x1234, 64))
	if !strings.HasPrefix(out, `{"id":3,"publish":{"channel":"bench","data":"wsb1.`) || !strings.HasSuffix(out, `"}}`) {
		t.Fatalf("publish %s", out)
	}
	data := out[strings.Index(out, `"data":"`)+8 : len(out)-3]
	// a push as Centrifugo writes it, batched with a publish reply
	frame := `{"id":3,"publish":{}}` + "\n" + `{"push":{"channel":"bench","pub":{"data":"` + data + `","offset":7}}}`
	lines := strings.Split(frame, "\n")
	if _, _, ok := c.Decode([]byte(lines[0])); ok {
		t.Fatal("publish reply decoded as a delivery")
	}
	if k := c.Control(nil, []byte(lines[0])); k != CtlIgnore {
		t.Fatalf("publish reply: %d", k)
	}
	got, seq, ok := c.Decode([]byte(lines[1]))
	if !ok || got != now || seq != 0x1234 {
		t.Fatalf("push: %d %x %v", got, seq, ok)
	}
	for p, want := range map[string]int{
		`{}`:                                 CtlIgnore,
		`{"id":1,"connect":{"client":"x"}}`:  CtlIgnore,
		`{"id":2,"subscribe":{}}`:            CtlReady,
		`{"id":2,"error":{"code":103}}`:      CtlError,
		`{"push":{"channel":"x","join":{}}}`: CtlOther,
	} {
		if k := c.Control(nil, []byte(p)); k != want {
			t.Fatalf("%s: %d, want %d", p, k, want)
		}
	}
	e := &centrifugoCodec{worker: 1, echo: true}
	if ch := string(e.appendChannel(nil, nil)); !strings.HasPrefix(ch, "e1-") {
		t.Fatalf("echo channel %q", ch)
	}
}

// TestCentrifugoScenarios runs echo and broadcast against a real Centrifugo
// v6. It installs it on first use (the Go module proxy), so it runs only when
// asked: WSBENCH_CENTRIFUGO=1.
func TestCentrifugoScenarios(t *testing.T) {
	if os.Getenv("WSBENCH_CENTRIFUGO") != "1" {
		t.Skip("set WSBENCH_CENTRIFUGO=1 to install and run Centrifugo v6")
	}
	// Centrifugo delivers to the publisher too: 7 connections, each message reaches 7
	checkPeerScenarios(t, "centrifugo", 7)
}

// checkPeerScenarios runs a small echo and a small broadcast (5 receivers,
// 2 publishers) against target and wants every message delivered once:
// perBroadcast is how many connections each published message reaches.
func checkPeerScenarios(t *testing.T, target string, perBroadcast int64) {
	t.Helper()
	e := testEnv(t, target)
	r := runOne(t, e, "echo", "-conns", "6", "-rate", "300", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Sent < 250 || r.Received != r.Sent || r.Lost != 0 || r.Duplicates != 0 {
		t.Fatalf("echo: sent %d received %d lost %d dups %d notes %v", r.Sent, r.Received, r.Lost, r.Duplicates, r.Notes)
	}
	r = runOne(t, e, "broadcast", "-receivers", "5", "-publishers", "2", "-rate", "100", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Expected != r.Sent*perBroadcast || r.Received != r.Expected || r.Duplicates != 0 {
		t.Fatalf("broadcast: sent %d expected %d received %d dups %d notes %v", r.Sent, r.Expected, r.Received, r.Duplicates, r.Notes)
	}
}
