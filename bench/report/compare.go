package report

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/wsgate/wsgate/bench/hist"
)

// Metric is one comparable number of a scenario.
type Metric struct {
	Scenario    string
	Name        string
	LowerBetter bool
	Get         func(Result) float64
	Fmt         func(float64) string
	// Loss: a latency percentile over delivered messages only; tables show
	// the run's losses next to it, so a target cannot look fast by dropping.
	Loss bool
}

func lat(f func(r Result) int64) func(Result) float64 {
	return func(r Result) float64 { return float64(f(r)) }
}

func durF(v float64) string { return Dur(int64(v)) }

// Metrics are the numbers the compare command puts side by side.
var Metrics = []Metric{
	{"idle", "server bytes/conn", true, func(r Result) float64 { return r.BytesPerConn }, Bytes, false},
	{"idle", "server bytes/conn, marginal (non-zero counts)", true, func(r Result) float64 { return r.BytesPerConnMarginal }, Bytes, false},
	{"idle", "baseline RSS", true, func(r Result) float64 { return float64(r.BaselineRSS) }, Bytes, false},
	{"connect", "upgrades/s", false, func(r Result) float64 { return r.UpgradesPerSec }, Rate, false},
	{"connect", "connect p99", true, lat(func(r Result) int64 { return sum(r.ConnectLatency).P99 }), durF, false},
	{"echo", "recv/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"echo", "p50", true, lat(func(r Result) int64 { return sum(r.Latency).P50 }), durF, true},
	{"echo", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"echo", "p99.9", true, lat(func(r Result) int64 { return sum(r.Latency).P999 }), durF, true},
	{"echo", "server CPU µs/msg", true, func(r Result) float64 { return r.ServerCPUPerMsgUs }, func(v float64) string { return fmt.Sprintf("%.2fµs", v) }, false},
	{"broadcast", "deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"broadcast", "p50", true, lat(func(r Result) int64 { return sum(r.Latency).P50 }), durF, true},
	{"broadcast", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"broadcast", "server CPU µs/delivery", true, func(r Result) float64 { return r.ServerCPUPerMsgUs }, func(v float64) string { return fmt.Sprintf("%.3fµs", v) }, false},
	{"reconnect", "all back after kill", true, func(r Result) float64 { return r.ReconnectAllMs }, func(v float64) string { return fmt.Sprintf("%.0fms", v) }, false},
	{"room", "deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"room", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"p2p", "deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"p2p", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"cross", "deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"cross", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"slow", "healthy deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"slow", "healthy p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
}

// pairMetrics are compared between a router result and its baseline in the
// same run (room: target vs target-raw; cross: target vs target-single).
var pairMetrics = []Metric{
	{"", "deliveries/s", false, func(r Result) float64 { return r.DeliveriesPerSec }, Rate, false},
	{"", "p50", true, lat(func(r Result) int64 { return sum(r.Latency).P50 }), durF, true},
	{"", "p99", true, lat(func(r Result) int64 { return sum(r.Latency).P99 }), durF, true},
	{"", "p99.9", true, lat(func(r Result) int64 { return sum(r.Latency).P999 }), durF, true},
	{"", "server CPU µs/delivery", true, func(r Result) float64 { return r.ServerCPUPerMsgUs }, func(v float64) string { return fmt.Sprintf("%.3fµs", v) }, false},
}

// PairBaselines names the baseline target suffix of the paired scenarios.
var PairBaselines = map[string]string{"room": "-raw", "cross": "-single"}

// PairRow is one metric of a router result next to its baseline.
type PairRow struct {
	Scenario string  `json:"scenario"`
	Target   string  `json:"target"`
	Baseline string  `json:"baseline"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Base     float64 `json:"base_value"`
	Ratio    float64 `json:"ratio"` // value/base
	Better   string  `json:"better"`
	// loss notes of both sides (latency percentiles only)
	ValueLoss string `json:"value_loss,omitempty"`
	BaseLoss  string `json:"base_loss,omitempty"`
	// with compare -repeat: the row is the round with the median ratio
	Runs     int     `json:"runs,omitempty"`
	RatioMin float64 `json:"ratio_min,omitempty"`
	RatioMax float64 `json:"ratio_max,omitempty"`
	fmt      func(float64) string
}

// Pairs compares each room/cross result with its baseline from the same run.
func Pairs(rs []Result) []PairRow {
	var out []PairRow
	for _, r := range rs {
		suf, ok := PairBaselines[r.Scenario]
		if !ok || strings.HasSuffix(r.Target, suf) || (r.Status != "" && r.Status != "ok") {
			continue
		}
		b, ok := findRound(rs, r.Scenario, r.Target+suf, r.Round)
		if !ok {
			continue
		}
		for _, m := range pairMetrics {
			row := PairRow{Scenario: r.Scenario, Target: r.Target, Baseline: b.Target, Metric: m.Name, Value: m.Get(r), Base: m.Get(b), Better: "higher", fmt: m.Fmt}
			if m.LowerBetter {
				row.Better = "lower"
			}
			if row.Base != 0 {
				row.Ratio = row.Value / row.Base
			}
			row.ValueLoss = LossNote(r.Lost, r.Expected, r.Duplicates, m.Loss)
			row.BaseLoss = LossNote(b.Lost, b.Expected, b.Duplicates, m.Loss)
			out = append(out, row)
		}
	}
	return medianPairs(out)
}

// findRound is find within one round of a repeated run.
func findRound(rs []Result, scen, target string, round int) (Result, bool) {
	for _, r := range findAll(rs, scen, target) {
		if r.Round == round {
			return r, true
		}
	}
	return Result{}, false
}

// medianPairs keeps, of the rows one (scenario, target, metric) has in
// several rounds, the one with the median ratio, noting the ratios' range.
func medianPairs(rows []PairRow) []PairRow {
	type key struct{ scen, target, metric string }
	groups := map[key][]PairRow{}
	var order []key
	for _, r := range rows {
		k := key{r.Scenario, r.Target, r.Metric}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]PairRow, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		sort.SliceStable(g, func(i, j int) bool { return g[i].Ratio < g[j].Ratio })
		m := g[(len(g)-1)/2]
		m.Runs, m.RatioMin, m.RatioMax = len(g), g[0].Ratio, g[len(g)-1].Ratio
		out = append(out, m)
	}
	return out
}

// PairMarkdown writes the router-vs-baseline table.
func PairMarkdown(w io.Writer, rows []PairRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### router vs baseline (same run)\n\n| scenario | metric | router | baseline | router/baseline | better |\n|---|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		f := r.fmt
		if f == nil {
			f = defFmt
		}
		rng := ""
		if r.Runs > 1 {
			rng = fmt.Sprintf(" [%.2fx–%.2fx, %d runs]", r.RatioMin, r.RatioMax, r.Runs)
		}
		fmt.Fprintf(w, "| %s (%s vs %s) | %s | %s%s | %s%s | %.2fx%s | %s |\n", r.Scenario, r.Target, r.Baseline, r.Metric, f(r.Value), r.ValueLoss, f(r.Base), r.BaseLoss, r.Ratio, rng, r.Better)
	}
}

func sum(s *hist.Summary) hist.Summary {
	if s == nil {
		return hist.Summary{}
	}
	return *s
}

// findAll returns every successful result of target in scen (one per
// round with compare -repeat).
func findAll(rs []Result, scen, target string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Scenario == scen && r.Target == target && (r.Status == "" || r.Status == "ok") {
			out = append(out, r)
		}
	}
	return out
}

// medianRun is the result whose metric value is the median (the lower
// middle one for an even count), so that the value and its loss note come
// from one real run.
func medianRun(rs []Result, get func(Result) float64) (Result, bool) {
	if len(rs) == 0 {
		return Result{}, false
	}
	s := append([]Result(nil), rs...)
	sort.SliceStable(s, func(i, j int) bool { return get(s[i]) < get(s[j]) })
	return s[(len(s)-1)/2], true
}

func minMax(rs []Result, get func(Result) float64) (lo, hi float64, n int) {
	for i, r := range rs {
		v := get(r)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi, len(rs)
}

// Ratio is base/other for one metric ("x" values > 1 mean base is larger).
type Ratio struct {
	Scenario string             `json:"scenario"`
	Metric   string             `json:"metric"`
	Values   map[string]float64 `json:"values"`
	Ratios   map[string]float64 `json:"ratios"` // key "base/other"
	Better   string             `json:"better"` // "lower" or "higher"
	// Lost and Dups per target, only for latency percentiles (Metric.Loss):
	// messages expected but not delivered, and deliveries of a seq twice.
	Lost     map[string]int64 `json:"lost,omitempty"`
	Expected map[string]int64 `json:"expected,omitempty"`
	Dups     map[string]int64 `json:"dups,omitempty"`
	// With repeated runs (compare -repeat): Values are medians over the
	// rounds, Min/Max the range and Runs how many rounds had a result; the
	// loss note is the median round's.
	Min  map[string]float64 `json:"min,omitempty"`
	Max  map[string]float64 `json:"max,omitempty"`
	Runs map[string]int     `json:"runs,omitempty"`
}

// Ratios computes base/other for every metric present.
func Ratios(rs []Result, base string, others []string) []Ratio {
	var out []Ratio
	for _, m := range Metrics {
		r := Ratio{Scenario: m.Scenario, Metric: m.Name, Values: map[string]float64{}, Ratios: map[string]float64{}, Better: "higher"}
		if m.LowerBetter {
			r.Better = "lower"
		}
		any := false
		for _, t := range append([]string{base}, others...) {
			all := findAll(rs, m.Scenario, t)
			if len(all) > 1 {
				if r.Runs == nil {
					r.Min, r.Max, r.Runs = map[string]float64{}, map[string]float64{}, map[string]int{}
				}
				r.Min[t], r.Max[t], r.Runs[t] = minMax(all, m.Get)
			}
			if res, ok := medianRun(all, m.Get); ok {
				r.Values[t] = m.Get(res)
				any = true
				if m.Loss {
					if r.Lost == nil {
						r.Lost, r.Expected, r.Dups = map[string]int64{}, map[string]int64{}, map[string]int64{}
					}
					r.Lost[t], r.Expected[t], r.Dups[t] = res.Lost, res.Expected, res.Duplicates
				}
			}
		}
		if !any {
			continue
		}
		if bv, ok := r.Values[base]; ok {
			for _, o := range others {
				if ov, ok := r.Values[o]; ok && ov != 0 {
					r.Ratios[base+"/"+o] = bv / ov
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// LossNote is the suffix a latency percentile carries: how many expected
// messages the percentile does not cover (lost), and duplicates if any.
func LossNote(lost, expected, dups int64, show bool) string {
	if !show {
		return ""
	}
	s := " (0 lost)"
	if lost != 0 {
		s = fmt.Sprintf(" (%d lost, %.2f%%)", lost, 100*float64(lost)/float64(max(expected, 1)))
	}
	if dups > 0 {
		s = s[:len(s)-1] + fmt.Sprintf(", %d dup)", dups)
	}
	return s
}

func metricFmt(scen, name string) func(float64) string {
	for _, m := range Metrics {
		if m.Scenario == scen && m.Name == name {
			return m.Fmt
		}
	}
	return defFmt
}

// Markdown writes a results.md snippet: one row per metric, one column per
// target, then the ratio columns.
func Markdown(w io.Writer, title string, ratios []Ratio, base string, others []string) {
	fmt.Fprintf(w, "### %s\n\n", title)
	cols := append([]string{base}, others...)
	fmt.Fprintf(w, "| scenario | metric | %s |", strings.Join(cols, " | "))
	for _, o := range others {
		fmt.Fprintf(w, " %s/%s |", base, o)
	}
	fmt.Fprintf(w, " better |\n|---|---|%s", strings.Repeat("---:|", len(cols)+len(others)))
	fmt.Fprintf(w, "---|\n")
	for _, r := range ratios {
		f := metricFmt(r.Scenario, r.Metric)
		fmt.Fprintf(w, "| %s | %s |", r.Scenario, r.Metric)
		for _, c := range cols {
			if v, ok := r.Values[c]; ok {
				rng := ""
				if n := r.Runs[c]; n > 1 {
					rng = fmt.Sprintf(" [%s–%s, %d runs]", f(r.Min[c]), f(r.Max[c]), n)
				}
				fmt.Fprintf(w, " %s%s%s |", f(v), LossNote(r.Lost[c], r.Expected[c], r.Dups[c], r.Lost != nil), rng)
			} else {
				fmt.Fprintf(w, " n/a |")
			}
		}
		for _, o := range others {
			if v, ok := r.Ratios[base+"/"+o]; ok {
				fmt.Fprintf(w, " %.2fx |", v)
			} else {
				fmt.Fprintf(w, " n/a |")
			}
		}
		fmt.Fprintf(w, " %s |\n", r.Better)
	}
}

// RatioTable prints the ratios as plain text.
func RatioTable(w io.Writer, ratios []Ratio, base string, others []string) {
	var b strings.Builder
	Markdown(&b, "compare", ratios, base, others)
	// the markdown table reads fine as text; strip the title line
	s := b.String()
	if i := strings.Index(s, "|"); i >= 0 {
		s = s[i:]
	}
	io.WriteString(w, s)
}
