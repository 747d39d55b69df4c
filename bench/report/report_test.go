package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/bench/hist"
)

func sample() []Result {
	h := hist.New()
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * 1000)
	}
	s := h.Summarize()
	return []Result{
		{Scenario: "echo", Target: "gateway", Status: "ok", Started: time.Unix(1700000000, 0).UTC(), Conns: 1000,
			OfferedRate: 20000, SentRate: 19999, Sent: 200000, Received: 200000, Expected: 200000, DeliveriesPerSec: 20000,
			Latency: &s, LatencyHist: h.Snapshot(), ServerCPUPerMsgUs: 3.5, Params: map[string]any{"rate": 20000.0},
			Failures: map[string]int64{"refused": 2}},
		{Scenario: "echo", Target: "nbio", Status: "ok", Conns: 1000, DeliveriesPerSec: 19000, Latency: &hist.Summary{P50: 500000, P99: 3200000, P999: 5000000, Max: 9000000}, ServerCPUPerMsgUs: 7},
		{Scenario: "idle", Target: "gateway", Status: "ok", BytesPerConn: 300, BaselineRSS: 8 << 20,
			IdleSamples: []RSSSample{{0, 8 << 20, 1 << 20}, {2000, 9 << 20, 2 << 20}}},
		{Scenario: "idle", Target: "nbio", Status: "ok", BytesPerConn: 1400, BaselineRSS: 6 << 20,
			IdleSamples: []RSSSample{{0, 6 << 20, 1 << 20}, {2000, 9 << 20, 2 << 20}}},
		{Scenario: "connect", Target: "gorilla", Status: "error", Error: "boom <&>"},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	run := &Run{Started: time.Unix(1700000000, 0).UTC(), Command: "wsbench compare", Host: "test", Results: sample()}
	p := filepath.Join(dir, "sub", "results.json")
	if err := WriteJSON(p, run); err != nil {
		t.Fatal(err)
	}
	back, err := ReadRun(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(run, back) {
		t.Fatalf("round trip mismatch:\n%+v\n%+v", run.Results[0], back.Results[0])
	}
	hb, err := hist.FromSnapshot(back.Results[0].LatencyHist)
	if err != nil || hb.Summarize() != *run.Results[0].Latency {
		t.Fatalf("histogram did not survive: %v", err)
	}
}

func wellFormed(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root %q", name, root)
	}
}

func TestSVGWellFormed(t *testing.T) {
	dir := t.TempDir()
	files, err := Charts(dir, sample())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"latency-echo.svg": true, "throughput-echo.svg": true, "rss-idle.svg": true, "throughput-idle.svg": true}
	for _, f := range files {
		delete(want, f)
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, f, b)
		if !bytes.Contains(b, []byte("gateway")) {
			t.Errorf("%s lacks the target name", f)
		}
	}
	if len(want) != 0 {
		t.Fatalf("missing charts %v (got %v)", want, files)
	}
	// hostile names and empty / zero data
	wellFormed(t, "hostile", BarChart{Title: `a<b>&"c"`, Groups: []string{"<g>"}, Series: []Series{{Name: "&x", Values: []float64{0}}}, Log: true}.SVG())
	wellFormed(t, "empty", LineChart{Title: "e"}.SVG())
}

func TestRatiosAndMarkdown(t *testing.T) {
	rs := sample()
	rt := Ratios(rs, "gateway", []string{"nbio", "gorilla"})
	var found bool
	for _, r := range rt {
		if r.Scenario == "idle" && r.Metric == "server bytes/conn" {
			found = true
			if math.Abs(r.Ratios["gateway/nbio"]-300.0/1400) > 1e-9 {
				t.Fatalf("ratio %v", r.Ratios)
			}
			if _, ok := r.Ratios["gateway/gorilla"]; ok {
				t.Fatal("ratio against a missing target")
			}
		}
		if r.Scenario == "connect" {
			t.Fatal("errored results must not be compared")
		}
	}
	if !found {
		t.Fatal("idle ratio missing")
	}
	var b strings.Builder
	Markdown(&b, "t", rt, "gateway", []string{"nbio", "gorilla"})
	md := b.String()
	if !strings.Contains(md, "| echo | p99 |") || !strings.Contains(md, "0.21x") {
		t.Fatalf("markdown:\n%s", md)
	}
	var tb strings.Builder
	Table(&tb, rs)
	if !strings.Contains(tb.String(), "boom") || !strings.Contains(tb.String(), "== idle ==") {
		t.Fatalf("table:\n%s", tb.String())
	}
}

func TestLeastSquares(t *testing.T) {
	x := []float64{0, 2000, 5000, 10000}
	y := []float64{1e6, 1e6 + 2000*300, 1e6 + 5000*300, 1e6 + 10000*300}
	s, i := LeastSquares(x, y)
	if math.Abs(s-300) > 1e-6 || math.Abs(i-1e6) > 1e-3 {
		t.Fatalf("slope %v intercept %v", s, i)
	}
}

// Every latency percentile in the compare table carries the run's losses
// (and duplicates), so a target cannot look fast by not delivering.
func TestMarkdownShowsLossNextToPercentiles(t *testing.T) {
	rs := sample()
	rs[1].Expected, rs[1].Received, rs[1].Lost, rs[1].Duplicates = 200000, 190000, 10000, 7
	var b strings.Builder
	Markdown(&b, "t", Ratios(rs, "gateway", []string{"nbio"}), "gateway", []string{"nbio"})
	out := b.String()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| echo | p") {
			continue
		}
		if !strings.Contains(line, "(0 lost)") || !strings.Contains(line, "(10000 lost, 5.00%, 7 dup)") {
			t.Fatalf("percentile row without losses: %s", line)
		}
	}
	if !strings.Contains(out, "| echo | p99 |") {
		t.Fatalf("no echo p99 row:\n%s", out)
	}
	if n := LossNote(0, 10, 0, false); n != "" {
		t.Fatalf("loss note on a non-latency metric: %q", n)
	}
}

// TestRepeatedRunsMedianAndRange: with several rounds (compare -repeat) a
// metric is its median round's value, with the range and the median round's
// losses beside it; a router result pairs with its baseline of the same round.
func TestRepeatedRunsMedianAndRange(t *testing.T) {
	var rs []Result
	for i, p99 := range []int64{900e6, 100e6, 500e6} {
		round := i + 1
		rs = append(rs,
			Result{Scenario: "broadcast", Target: "gateway", Status: "ok", Round: round, Expected: 1000, Lost: int64(round),
				Latency: &hist.Summary{P50: p99 / 2, P99: p99}, DeliveriesPerSec: float64(1000 * round)},
			Result{Scenario: "broadcast", Target: "uws", Status: "ok", Round: round, Expected: 1000,
				Latency: &hist.Summary{P50: 40e6, P99: 90e6}, DeliveriesPerSec: 1000},
			Result{Scenario: "room", Target: "gateway", Status: "ok", Round: round, DeliveriesPerSec: float64(100 * round)},
			Result{Scenario: "room", Target: "gateway-raw", Status: "ok", Round: round, DeliveriesPerSec: 100})
	}
	var p99 Ratio
	for _, r := range Ratios(rs, "gateway", []string{"uws"}) {
		if r.Scenario == "broadcast" && r.Metric == "p99" {
			p99 = r
		}
	}
	if p99.Values["gateway"] != 500e6 || p99.Min["gateway"] != 100e6 || p99.Max["gateway"] != 900e6 || p99.Runs["gateway"] != 3 {
		t.Fatalf("gateway p99: value %v min %v max %v runs %v, want the median 500ms of 100..900ms over 3", p99.Values["gateway"], p99.Min["gateway"], p99.Max["gateway"], p99.Runs["gateway"])
	}
	if p99.Lost["gateway"] != 3 {
		t.Fatalf("loss note from round %d, want the median round (3)", p99.Lost["gateway"])
	}
	var b strings.Builder
	Markdown(&b, "t", Ratios(rs, "gateway", []string{"uws"}), "gateway", []string{"uws"})
	if !strings.Contains(b.String(), "500.00ms (3 lost, 0.30%) [100.00ms–900.00ms, 3 runs]") {
		t.Fatalf("markdown lacks the median with its loss and range:\n%s", b.String())
	}
	pairs := Pairs(rs)
	for _, p := range pairs {
		if p.Metric == "deliveries/s" {
			if p.Runs != 3 || p.Ratio != 2 || p.RatioMin != 1 || p.RatioMax != 3 {
				t.Fatalf("room pair: %+v, want ratio 2 (median of 1, 2, 3 round by round) over 3 runs", p)
			}
			return
		}
	}
	t.Fatalf("no deliveries/s pair in %+v", pairs)
}
