package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/bench/report"
)

func TestJSONCodecRoundTrip(t *testing.T) {
	c := newJSONCodec(&WorkerInit{CodecArgs: map[string]string{"mode": "room", "room": "r1"}})
	now := time.Now().UnixNano()
	out := c.Encode(nil, now, 0xabc, 64)
	s := string(out)
	if !strings.HasPrefix(s, `{"type":"message","room":"r1","data":"wsb1.`) || !strings.HasSuffix(s, `"}`) {
		t.Fatalf("frame %s", s)
	}
	data := s[strings.Index(s, `"data":"`)+8 : len(s)-2]
	if len(data) != 64 {
		t.Fatalf("data %d bytes: %q", len(data), data)
	}
	// a delivery as the gateway writes it
	del := []byte(`{"type":"message","room":"r1","from":"u12","data":"` + data + `","id":"a1b2-0-2s","ts":1764580000000}`)
	got, seq, ok := c.Decode(del)
	if !ok || got != now || seq != 0xabc {
		t.Fatalf("decode %d seq %x %v, want %d seq abc", got, seq, ok, now)
	}
	for _, p := range []string{`{"type":"joined","room":"r1"}`, `{"type":"auth:ok","user":"u1"}`, `{"type":"error","code":"not_joined"}`, `{"type":"gap","dropped":1}`} {
		if _, _, ok := c.Decode([]byte(p)); ok {
			t.Fatalf("decoded %s", p)
		}
	}
	if k := c.Control(nil, []byte(`{"type":"joined","room":"r1"}`)); k != CtlReady {
		t.Fatalf("joined: %d", k)
	}
	if k := c.Control(nil, []byte(`{"type":"auth:ok","user":"u1"}`)); k != CtlIgnore {
		t.Fatalf("auth:ok: %d", k)
	}
	if k := c.Control(nil, []byte(`{"type":"error","code":"not_joined"}`)); k != CtlError {
		t.Fatalf("error: %d", k)
	}
	p := newJSONCodec(&WorkerInit{Index: 0, CodecArgs: map[string]string{"mode": "p2p", "recv_lo": "5", "recv_n": "3"}})
	var tos []string
	for i := 0; i < 4; i++ {
		f := string(p.Encode(nil, now, uint64(i), 0))
		if !strings.HasPrefix(f, `{"type":"send","to":"u`) {
			t.Fatalf("p2p frame %s", f)
		}
		tos = append(tos, f[len(`{"type":"send","to":"`):strings.Index(f, `","data"`)])
	}
	if strings.Join(tos, ",") != "u5,u6,u7,u5" {
		t.Fatalf("p2p receivers %v", tos)
	}
	if k := p.Control(nil, []byte(`{"type":"auth:ok","user":"u1"}`)); k != CtlReady {
		t.Fatalf("p2p auth:ok: %d", k)
	}
}

func TestMintTokenVerifies(t *testing.T) {
	tok, err := MintToken("s3cret", "u42")
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: []byte("s3cret")})
	if err != nil {
		t.Skipf("router verifier: %v", err)
	}
	c, err := v.Verify([]byte(tok))
	if err != nil || c.Sub != "u42" {
		t.Fatalf("verify: %v %+v", err, c)
	}
}

// The router scenarios against the real gateway, tiny: room (+ raw
// baseline), p2p, cross (two instances + single) and slow.
func TestRouterScenariosAgainstGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	e := testEnv(t, "gateway")
	if _, err := e.B.Binary(Builtin["gateway"]); err != nil {
		t.Skipf("gateway does not build right now (not bench's code): %v", err)
	}
	defer func() {
		for _, x := range e.Run.Results {
			t.Logf("%s %s %.1fs", x.Scenario, x.Target, x.WallS)
		}
	}()
	r := runOne(t, e, "room", "-receivers", "6", "-publishers", "2", "-rate", "40", "-duration", "500ms", "-warmup", "100ms", "-drain", "3s")
	if r.Conns != 8 || r.Lost != 0 || r.Received == 0 || r.Received != r.Expected || r.ProtocolErrors != 0 {
		t.Fatalf("room: conns %d recv %d expected %d lost %d errors %d notes %v", r.Conns, r.Received, r.Expected, r.Lost, r.ProtocolErrors, r.Notes)
	}
	var raw *report.Result
	for i := range e.Run.Results {
		if e.Run.Results[i].Target == "gateway-raw" {
			raw = &e.Run.Results[i]
		}
	}
	if raw == nil || raw.Status != "ok" || raw.Received != raw.Expected || raw.Received == 0 {
		t.Fatalf("raw baseline: %+v", raw)
	}
	r = runOne(t, e, "p2p", "-receivers", "5", "-senders", "2", "-rate", "100", "-duration", "500ms", "-warmup", "100ms", "-drain", "3s")
	if r.Received == 0 || r.Received != r.Sent || r.ProtocolErrors != 0 {
		t.Fatalf("p2p: sent %d recv %d errors %d %v", r.Sent, r.Received, r.ProtocolErrors, r.Notes)
	}
	r = runOne(t, e, "cross", "-receivers", "6", "-publishers", "2", "-rate", "40", "-duration", "500ms", "-warmup", "100ms", "-drain", "3s", "-single=false")
	if r.Instances != 2 || r.Received == 0 || r.Received != r.Expected {
		t.Fatalf("cross: recv %d expected %d %v", r.Received, r.Expected, r.Notes)
	}
	r = runOne(t, e, "slow", "-receivers", "10", "-slow-fraction", "0.2", "-publishers", "2", "-rate", "400", "-size", "4000",
		"-max-queue-bytes", "65536", "-sndbuf", "16384", "-duration", "2s", "-warmup", "200ms", "-drain", "3s", "-settle", "500ms")
	if r.SlowConns != 2 || r.ServerMetrics[`wsgate_closes_total{code="4009"}`] < 2 {
		t.Fatalf("slow: %d slow, metrics %v, closes %v, notes %v", r.SlowConns, r.ServerMetrics, r.SlowCloses, r.Notes)
	}
}
