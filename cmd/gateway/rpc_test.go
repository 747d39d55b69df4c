package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRPCThroughBinary: the real gateway, its embedded NATS server and a
// nats.go responder: -rpc-timeout and -rpc-max-inflight take effect, and
// the rpc metrics count what happened.
func TestRPCThroughBinary(t *testing.T) {
	natsAddr := freeAddr(t)
	gw := startGateway(t, baseArgs("-nats-listen", natsAddr, "-rpc-timeout", "300ms", "-rpc-max-inflight", "1")...)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("gw.rpc.t.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("gw.rpc.t.silent", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cl := dialClient(t, gw.Addr, "alice")
	cl.send(map[string]any{"type": "rpc", "method": "t.echo", "data": map[string]any{"n": 1}, "id": "r1"})
	if m := cl.read(); m.Type != "rpc:result" || m.ID != "r1" || string(m.Data) != `{"n":1}` {
		t.Fatalf("echo: %+v", m)
	}
	start := time.Now()
	cl.send(map[string]any{"type": "rpc", "method": "t.silent", "id": "r2"})
	cl.send(map[string]any{"type": "rpc", "method": "t.echo", "id": "r3"})
	if m := cl.read(); m.Type != "error" || m.Code != "rate_limited" || m.ID != "r3" {
		t.Fatalf("second in flight with -rpc-max-inflight 1: %+v", m)
	}
	if m := cl.read(); m.Type != "error" || m.Code != "timeout" || m.ID != "r2" {
		t.Fatalf("silent service: %+v", m)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("timeout after %v, before -rpc-timeout 300ms", el)
	}
	fams := scrape(t, gw)
	for _, w := range []struct {
		outcome string
		n       float64
	}{{"ok", 1}, {"timeout", 1}, {"rate_limited", 1}, {"service_error", 0}, {"unavailable", 0}} {
		if v, ok := metricValue(fams, "wsgate_rpc_requests_total", "outcome", w.outcome); !ok || v != w.n {
			t.Errorf("rpc_requests_total{outcome=%q} = %v (present %v), want %v", w.outcome, v, ok, w.n)
		}
	}
	if v, ok := metricValue(fams, "wsgate_rpc_latency_seconds"); !ok || v != 1 {
		t.Errorf("rpc_latency_seconds count = %v (present %v), want 1", v, ok)
	}
	if v, ok := metricValue(fams, "wsgate_rpc_inflight"); !ok || v != 0 {
		t.Errorf("rpc_inflight = %v (present %v), want 0", v, ok)
	}
}
