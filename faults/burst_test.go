package faults

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestServiceBurstFastReceivers has a service publish a burst on
// gw.<room> (NATS) of several times -max-queue-bytes (default 1 MiB) per
// receiver, to receivers that read as fast as they can. It proves that a
// receiver that reads is never judged a slow consumer (the engine used to
// queue a whole burst before writing any of it, and closed every receiver
// with 4009), and that each gets every message once, in order, with no gap.
func TestServiceBurstFastReceivers(t *testing.T) {
	size := sizeOf(t)
	receivers := pick(size, 20, 100)
	burst := 2000 // messages of about 1 KiB: 2x -max-queue-bytes per receiver
	const room = "burst"

	ns := startNATS(t, 0)
	g := startGateway(t, "burst", nil, gatewayArgs(ns.ClientURL())...)
	clients := make([]*client, receivers)
	for i := range clients {
		clients[i] = mustDial(t, g.Addr, fmt.Sprintf("r%d", i))
		if err := clients[i].join(room); err != nil {
			t.Fatal(err)
		}
	}

	svc, err := nats.Connect(ns.ClientURL(), nats.Name("faults-service"))
	if err != nil {
		t.Fatalf("service: connect to NATS: %v", err)
	}
	defer svc.Close()
	subject := "gw.room." + room

	// The gateway subscribes gw.room.burst once the room has members; a
	// probe (seq -1) published until the first receiver sees it shows that
	// it has. Receivers skip probes.
	probe := mustJSON(t, map[string]any{"data": seqData{Seq: -1}, "from": "svc"})
	waitUntil(t, 15*time.Second, func() string {
		if err := svc.Publish(subject, probe); err != nil {
			return fmt.Sprintf("publish probe: %v", err)
		}
		m, err := clients[0].next(100 * time.Millisecond)
		if err == nil && m.Type == "message" {
			return ""
		}
		return fmt.Sprintf("the gateway never delivered a service message on %s: %v %+v", subject, err, m)
	})

	// One result per receiver: how many in order, and what went wrong.
	type result struct {
		got   int
		probe int
		fail  string
	}
	results := make([]result, receivers)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			for r.got < burst {
				m, err := c.next(60 * time.Second)
				if err != nil {
					r.fail = fmt.Sprintf("after %d messages: %v (close code %d)", r.got, err, closeCode(err))
					return
				}
				if m.Type != "message" {
					r.fail = fmt.Sprintf("after %d messages: got %+v", r.got, m)
					return
				}
				n, err := seqOf(m)
				if err != nil {
					r.fail = err.Error()
					return
				}
				switch {
				case n == -1:
					r.probe++
				case n != r.got:
					r.fail = fmt.Sprintf("message %d arrived as number %d", n, r.got)
					return
				default:
					r.got++
				}
			}
		}()
	}
	pad := strings.Repeat("x", 1000)
	for n := 0; n < burst; n++ {
		if err := svc.Publish(subject, mustJSON(t, map[string]any{"data": seqData{Seq: n, Pad: pad}, "from": "svc"})); err != nil {
			t.Fatalf("service publish %d: %v", n, err)
		}
	}
	if err := svc.Flush(); err != nil {
		t.Fatalf("service flush: %v", err)
	}
	published := time.Since(start)
	wg.Wait()
	took := time.Since(start)
	g.requireRunning()

	delivered, failed := 0, 0
	for i, r := range results {
		delivered += r.got
		if r.fail != "" {
			failed++
			if failed <= 5 {
				t.Errorf("receiver r%d: %s", i, r.fail)
			}
		}
	}
	m, err := g.metrics()
	if err != nil {
		t.Fatal(err)
	}
	perReceiver := burst * (len(pad) + 60)
	t.Logf("service burst (%s): %d receivers x %d messages (~%d KiB each, %.1fx -max-queue-bytes 1 MiB): "+
		"%d of %d delivered in order, %d receivers failed; published in %v, all read in %v; "+
		"wsgate_slow_consumers_total %.0f, wsgate_gaps_sent_total %.0f, wsgate_backplane_dropped_total %.0f",
		size, receivers, burst, perReceiver>>10, float64(perReceiver)/(1<<20),
		delivered, receivers*burst, failed, published.Round(time.Millisecond), took.Round(time.Millisecond),
		m["wsgate_slow_consumers_total"], m["wsgate_gaps_sent_total"], m["wsgate_backplane_dropped_total"])
	if m["wsgate_slow_consumers_total"] != 0 {
		t.Errorf("wsgate_slow_consumers_total = %.0f, want 0", m["wsgate_slow_consumers_total"])
	}
}

// mustJSON marshals v or fails the test.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return b
}
