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
