package harness

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wsgate/wsgate/bench/report"
)

// Main is the wsbench command line; it returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		usage(stderr)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "worker":
		if err := WorkerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(stderr, "worker:", err)
			return 1
		}
		return 0
	case "compare":
		return compareMain(rest, stdout, stderr)
	case "report":
		return reportMain(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	s := Lookup(cmd)
	if s == nil {
		fmt.Fprintf(stderr, "unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Common
	c.Register(fs, "gorilla,nbio")
	run := s.Define(fs, "")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "wsbench %s: %s\n\nflags:\n", s.Name, s.Help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	e, err := NewEnv(c, "wsbench "+strings.Join(args, " "))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer e.Close()
	e.RunScenario(s, run, FlagParams(fs, ""))
	return finish(e, stdout, stderr, "")
}

func finish(e *Env, stdout, stderr io.Writer, base string) int {
	if err := e.Save(); err != nil {
		fmt.Fprintln(stderr, "save:", err)
		return 1
	}
	report.Table(stdout, e.Run.Results)
	fmt.Fprintf(stdout, "\nresults: %s\n", e.OutDir)
	for _, r := range e.Run.Results {
		if r.Status != "ok" {
			return 1
		}
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wsbench <scenario|compare|report> [flags]   (wsbench <cmd> -h for flags)")
	fmt.Fprintln(w, "\nscenarios:")
	for _, s := range Scenarios() {
		fmt.Fprintf(w, "  %-10s %s\n", s.Name, s.Help)
	}
	fmt.Fprintln(w, "  compare    run several scenarios against several targets (default gateway, nbio, gorilla); print ratios, write results.json + results.md")
	fmt.Fprintln(w, "  report     re-render table, charts and results.md from a results.json (-in path)")
}

func compareMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Common
	c.Register(fs, "gateway,nbio,gorilla")
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	list := fs.String("scenarios", "idle,connect,echo,broadcast,reconnect", "scenarios to run, in order ("+strings.Join(names, ",")+")")
	base := fs.String("base", "gateway", "target the ratios are computed for (base/other)")
	repeat := fs.Int("repeat", 1, "rounds of every scenario against every target (interleaved: round 1 of all, then round 2, ...); the tables show each metric's median round and the range")
	runs := map[string]RunFunc{}
	for _, s := range Scenarios() {
		runs[s.Name] = s.Define(fs, s.Name+".")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "wsbench compare: every scenario against every target in one run; scenario flags are prefixed (-echo.rate, -idle.counts, ...)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	e, err := NewEnv(c, "wsbench compare "+strings.Join(args, " "))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer e.Close()
	var scens []*Scenario
	for _, n := range strings.Split(*list, ",") {
		n = strings.TrimSpace(n)
		s := Lookup(n)
		if s == nil {
			fmt.Fprintf(stderr, "unknown scenario %q\n", n)
			return 2
		}
		scens = append(scens, s)
	}
	if *repeat < 1 {
		fmt.Fprintln(stderr, "-repeat: want 1 or more")
		return 2
	}
	for round := 1; round <= *repeat; round++ {
		if *repeat > 1 {
			e.Round = round
			e.logf("==== round %d of %d", round, *repeat)
		}
		for _, s := range scens {
			e.RunScenario(s, runs[s.Name], FlagParams(fs, s.Name+"."))
		}
	}
	rc := finish(e, stdout, stderr, *base)
	writeCompare(e.OutDir, e.Run.Results, *base, e.targetNames(), stdout)
	return rc
}

func (e *Env) targetNames() []string {
	var n []string
	for _, s := range e.Specs {
		n = append(n, s.Name)
	}
	return n
}

func writeCompare(dir string, rs []report.Result, base string, targets []string, stdout io.Writer) {
	var others []string
	for _, t := range targets {
		if t != base {
			others = append(others, t)
		}
	}
	ratios := report.Ratios(rs, base, others)
	fmt.Fprintln(stdout)
	report.RatioTable(stdout, ratios, base, others)
	pairs := report.Pairs(rs)
	report.PairMarkdown(stdout, pairs)
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err == nil {
		report.Markdown(f, "wsbench compare", ratios, base, others)
		report.PairMarkdown(f, pairs)
		f.Close()
	}
	_ = report.WriteJSON(filepath.Join(dir, "ratios.json"), map[string]any{"ratios": ratios, "pairs": pairs})
}

func reportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "results.json to render")
	base := fs.String("base", "gateway", "ratio base target")
	if err := fs.Parse(args); err != nil || *in == "" {
		fmt.Fprintln(stderr, "usage: wsbench report -in results.json [-base gateway]")
		return 2
	}
	run, err := report.ReadRun(*in)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	dir := filepath.Dir(*in)
	if _, err := report.Charts(dir, firstRound(run.Results)); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	report.Table(stdout, run.Results)
	seen := map[string]bool{}
	var ts []string
	for _, r := range run.Results {
		if !seen[r.Target] {
			seen[r.Target] = true
			ts = append(ts, r.Target)
		}
	}
	writeCompare(dir, run.Results, *base, withoutPairBaselines(ts), stdout)
	return 0
}

// withoutPairBaselines drops the paired scenarios' baselines (gateway-raw,
// gateway-single) from the targets: they are compared in the pair table,
// not as columns of their own, as in compare.
func withoutPairBaselines(ts []string) []string {
	seen := map[string]bool{}
	for _, t := range ts {
		seen[t] = true
	}
	var out []string
	for _, t := range ts {
		base := false
		for _, suf := range report.PairBaselines {
			if p, ok := strings.CutSuffix(t, suf); ok && seen[p] {
				base = true
			}
		}
		if !base {
			out = append(out, t)
		}
	}
	return out
}
