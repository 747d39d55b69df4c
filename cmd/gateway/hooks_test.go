package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The gateway binary with -events, -hook-connect and -hook-join against a
// service on its embedded NATS server: the hooks admit and join, the
// events arrive, and the metrics count both.
func TestGatewayHooksAndEvents(t *testing.T) {
	natsAddr := freeAddr(t)
	gw := startGateway(t, baseArgs("-nats-listen", natsAddr, "-instance-id", "h1",
		"-events", "-hook-connect", "-hook-join", "vip.*", "-hook-timeout", "3s")...)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	events := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("gw.event.>", events); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("gw.hook.connect", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"allow":true,"rooms":["lobby"]}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("gw.hook.join", func(m *nats.Msg) {
		var req struct{ Room string }
		_ = json.Unmarshal(m.Data, &req)
		_ = m.Respond([]byte(`{"allow":` + map[bool]string{true: "true", false: "false"}[req.Room == "vip.ok"] + `}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cl := dialClient(t, gw.Addr, "alice")
	if m := cl.read(); m.Type != "joined" || m.Room != "lobby" {
		t.Fatalf("server join %+v", m)
	}
	cl.send(map[string]string{"type": "join", "room": "vip.ok"})
	if m := cl.read(); m.Type != "joined" || m.Room != "vip.ok" {
		t.Fatalf("vip.ok %+v", m)
	}
	cl.send(map[string]string{"type": "join", "room": "vip.no"})
	if m := cl.read(); m.Type != "error" || m.Code != "forbidden" {
		t.Fatalf("vip.no %+v", m)
	}
	for _, want := range []string{"gw.event.connect", "gw.event.join.lobby", "gw.event.join.vip.ok"} {
		select {
		case m := <-events:
			if m.Subject != want || !strings.Contains(string(m.Data), `"instance":"h1"`) {
				t.Fatalf("event %s %s, want %s", m.Subject, m.Data, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	want := []string{
		`wsgate_hooks_total{hook="connect",outcome="allow"} 1`,
		`wsgate_hooks_total{hook="join",outcome="allow"} 1`,
		`wsgate_hooks_total{hook="join",outcome="deny"} 1`,
		`wsgate_events_total{result="published"} 3`,
	}
	waitFor(t, 5*time.Second, func() string {
		_, body, err := gw.adminGet("/metrics")
		if err != nil {
			return err.Error()
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return "metrics lack " + w
			}
		}
		return ""
	})
}

func TestGatewayHookFlagsChecked(t *testing.T) {
	expectStartupFailure(t, 2, baseArgs("-hook-join", "vip.*,bad room"), `hook-join pattern "bad room"`)
	expectStartupFailure(t, 2, baseArgs("-hook-timeout", "0s"), "hook-timeout 0s: must be positive")
}
