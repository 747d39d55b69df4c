package main

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches and parses /metrics.
func scrape(t *testing.T, gw *gwProc) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, err := gw.adminGet("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", code, err, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// metricValue sums the samples of family name whose labels include want
// (pairs of name, value). Counters, gauges and histograms (sample count).
func metricValue(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			ok := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestMetrics drives known traffic through the real binary and checks that
// every counter moved by exactly what the traffic implies.
func TestMetrics(t *testing.T) {
	const (
		n     = 8  // clients in room1
		m     = 10 // messages each
		spam  = 30 // messages from the rate-limited client
		burst = 20
	)
	// -rate-msgs 1 refills one token a second, so the spam client gets its
	// burst and (almost surely) nothing more while it sends.
	gw := startGateway(t, baseArgs("-rate-msgs", "1", "-rate-burst", fmt.Sprint(burst), "-pprof")...)

	before := scrape(t, gw)
	if v, _ := metricValue(before, "wsgate_upgrades_total"); v != 0 {
		t.Fatalf("upgrades before traffic: %v", v)
	}

	cls := make([]*wsClient, n)
	for i := range cls {
		cls[i] = dialClient(t, gw.Addr, fmt.Sprintf("user%d", i))
		cls[i].join("room1")
	}
	// One bad token: 401, and no upgrade.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws?token=not-a-jwt", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token upgrade: %v %v, want 401", err, resp)
	}

	for i, cl := range cls {
		for j := range m {
			cl.send(map[string]any{"type": "message", "room": "room1", "data": fmt.Sprintf("%d-%d", i, j), "id": fmt.Sprint(j)})
		}
	}
	// Each client gets m acks and (n-1)*m messages.
	for _, cl := range cls {
		acks, got := 0, 0
		for acks < m || got < (n-1)*m {
			switch f := cl.read(); f.Type {
			case "ack":
				acks++
			case "message":
				got++
			default:
				t.Fatalf("%s: unexpected %+v", cl.user, f)
			}
		}
	}

	// The rate-limited client, alone in its room.
	sp := dialClient(t, gw.Addr, "spammer")
	sp.join("spam")
	for j := range spam {
		sp.send(map[string]any{"type": "message", "room": "spam", "data": j, "id": fmt.Sprint(j)})
	}
	acked, limited := 0, 0
	for acked+limited < spam {
		f := sp.read()
		switch {
		case f.Type == "ack":
			acked++
		case f.Type == "error" && f.Code == "rate_limited":
			limited++
		default:
			t.Fatalf("spammer: unexpected %+v", f)
		}
	}
	// join took one token of the burst.
	if limited < spam-(burst-1)-1 || limited > spam-(burst-1) {
		t.Fatalf("spammer: %d rate limited, %d acked; want about %d limited", limited, acked, spam-(burst-1))
	}

	deliveries := n * m * (n - 1)
	published := n*m + acked
	type want struct {
		name   string
		labels []string
		value  float64
	}
	wants := []want{
		{"wsgate_upgrades_total", nil, n + 1},
		{"wsgate_upgrades_refused_total", []string{"status", "401"}, 1},
		{"wsgate_upgrades_refused_total", nil, 1},
		{"wsgate_auth_failures_total", nil, 1},
		{"wsgate_connections", []string{"state", "active"}, n + 1},
		{"wsgate_connections", []string{"state", "connecting"}, 0},
		{"wsgate_messages_in_total", nil, float64(n*(1+m) + 1 + spam)},
		{"wsgate_deliveries_total", nil, float64(deliveries)},
		{"wsgate_dropped_total", []string{"reason", "rate_limit"}, float64(limited)},
		{"wsgate_dropped_total", []string{"reason", "low_priority"}, 0},
		{"wsgate_dropped_total", []string{"reason", "slow_consumer"}, 0},
		{"wsgate_rate_kicks_total", nil, 0},
		{"wsgate_closes_total", nil, 0},
		{"wsgate_backplane_published_total", nil, float64(published)},
		{"wsgate_backplane_publish_errors_total", nil, 0},
		{"wsgate_backplane_connected", nil, 1},
		{"wsgate_draining", nil, 0},
		{"wsgate_connections_shed_total", []string{"reason", "max_conns"}, 0},
		{"wsgate_connections_shed_total", []string{"reason", "descriptors"}, 0},
		{"wsgate_accept_errors_total", nil, 0},
		{"wsgate_overload_gaps_total", nil, 0},
	}
	check := func(fams map[string]*dto.MetricFamily, ws []want) string {
		var bad []string
		for _, w := range ws {
			v, ok := metricValue(fams, w.name, w.labels...)
			if !ok || v != w.value {
				bad = append(bad, fmt.Sprintf("%s%v = %v (present %v), want %v", w.name, w.labels, v, ok, w.value))
			}
		}
		return strings.Join(bad, "; ")
	}
	var fams map[string]*dto.MetricFamily
	// The backplane publishes from its own goroutine: let it catch up.
	waitFor(t, 5*time.Second, func() string {
		fams = scrape(t, gw)
		return check(fams, wants)
	})

	if v, _ := metricValue(fams, "wsgate_bytes_in_total"); v <= 0 {
		t.Errorf("bytes_in_total = %v", v)
	}
	if v, _ := metricValue(fams, "wsgate_bytes_out_total"); v <= 0 {
		t.Errorf("bytes_out_total = %v", v)
	}
	// Sampled latency: one delivery in 64 per loop.
	samples, ok := metricValue(fams, "wsgate_delivery_latency_seconds")
	if lo, hi := float64(deliveries/64-2), float64(deliveries/64); !ok || samples < lo || samples > hi {
		t.Errorf("delivery_latency_seconds count = %v (present %v), want in [%v, %v]", samples, ok, lo, hi)
	}
	if h := fams["wsgate_delivery_latency_seconds"]; h != nil && len(h.GetMetric()) == 1 {
		hs := h.GetMetric()[0].GetHistogram()
		t.Logf("latency: %d samples, mean %v", hs.GetSampleCount(), time.Duration(hs.GetSampleSum()/float64(max(hs.GetSampleCount(), 1))*1e9))
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "wsgate_loops"} {
		if _, ok := metricValue(fams, name); !ok {
			t.Errorf("%s missing", name)
		}
	}

	// Event-loop lag: probed once a second on every loop that runs.
	waitFor(t, 3*time.Second, func() string {
		fams = scrape(t, gw)
		for _, loop := range []string{"0", "1"} {
			if _, ok := metricValue(fams, "wsgate_loop_lag_seconds", "loop", loop); !ok {
				return "no loop_lag_seconds for loop " + loop
			}
			if v, _ := metricValue(fams, "wsgate_loop_lag_max_seconds", "loop", loop); v <= 0 {
				return "loop_lag_max_seconds is 0 for loop " + loop
			}
		}
		return ""
	})

	// Every wsgate metric the Grafana dashboard queries exists.
	dash, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\b(?:wsgate|go|process)_[a-z_]+`).FindAllString(string(dash), -1) {
		base := strings.TrimSuffix(name, "_bucket")
		if fams[base] == nil {
			t.Errorf("docs/grafana-dashboard.json queries %s, which /metrics does not expose", name)
		}
	}

	// pprof is on the admin port with -pprof.
	if code, _, err := gw.adminGet("/debug/pprof/cmdline"); err != nil || code != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline: %d %v", code, err)
	}

	// Clients close normally: every close is received, none sent first.
	for _, cl := range append(cls, sp) {
		cl.closeNormal()
	}
	waitFor(t, 5*time.Second, func() string {
		fams = scrape(t, gw)
		return check(fams, []want{
			{"wsgate_closes_received_total", nil, n + 1},
			{"wsgate_connections", nil, 0},
			{"wsgate_closes_total", nil, 0},
		})
	})
}

// TestMetricsShed: connections refused before the upgrade at -max-conns are
// counted by reason.
func TestMetricsShed(t *testing.T) {
	gw := startGateway(t, baseArgs("-max-conns", "1")...)
	cl := dialClient(t, gw.Addr, "first")
	defer cl.closeNormal()
	const extra = 3
	for range extra {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws?token="+token(t, "second"), nil)
		if err == nil {
			t.Fatal("a second connection upgraded past -max-conns 1")
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("second connection: %v %v, want 503", err, resp)
		}
	}
	waitFor(t, 5*time.Second, func() string {
		fams := scrape(t, gw)
		if v, ok := metricValue(fams, "wsgate_connections_shed_total", "reason", "max_conns"); !ok || v != extra {
			return fmt.Sprintf("connections_shed_total{reason=max_conns} = %v (present %v), want %d", v, ok, extra)
		}
		if v, _ := metricValue(fams, "wsgate_connections_shed_total", "reason", "descriptors"); v != 0 {
			return fmt.Sprintf("connections_shed_total{reason=descriptors} = %v, want 0", v)
		}
		return ""
	})
}

// TestPProfOff: without -pprof there is no profiler on the admin port.
func TestPProfOff(t *testing.T) {
	gw := startGateway(t, baseArgs()...)
	if code, _, err := gw.adminGet("/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without -pprof: %d %v, want 404", code, err)
	}
	if code, _, _ := gw.adminGet("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
}

// TestLogFormatJSON: -log-format json writes one JSON object per line.
func TestLogFormatJSON(t *testing.T) {
	// startGateway parses the text lines, so run this one by hand.
	out, err := runBinary(t, 10*time.Second, "-log-format", "json", "-log-level", "debug", "-echo",
		"-addr", "127.0.0.1:0", "-admin-addr", "", "-drain-time", "0s")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"msg":"gateway listening"`) {
		t.Fatalf("no JSON listening line in:\n%s", out)
	}
	if _, err := runBinary(t, 5*time.Second, "-log-level", "loud", "-echo"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("-log-level loud: %v, want exit status 2", err)
	}
}
