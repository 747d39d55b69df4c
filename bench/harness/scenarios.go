package harness

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/bench/hist"
	"github.com/wsgate/wsgate/bench/procstat"
	"github.com/wsgate/wsgate/bench/report"
)

// Common are the flags every scenario shares.
type Common struct {
	Targets        string
	Out            string
	Src            string
	PerWorker      int
	Workers        int
	Loops          int
	Sources        string
	ConnectTimeout time.Duration
	MinIteration   time.Duration
	Quiet          bool
	Ports          string
	Profile        bool
}

// Register adds the common flags.
func (c *Common) Register(fs *flag.FlagSet, defTargets string) {
	fs.StringVar(&c.Targets, "targets", defTargets, "comma-separated targets: gateway, gateway-1loop (-loops 1), gorilla, nbio, nbio-pool (nbio on its default handler pool), centrifugo (installed with go install into the user cache folder on first use), uws (uWebSockets.js on Node.js, npm ci into the user cache folder on first use), name=ws://host:port/path[#pid], name=binary args-with-{addr}-{admin}-{mode}-{modeflag}")
	fs.StringVar(&c.Out, "out", "", "results folder (default bench/results/<timestamp> under the module root)")
	fs.StringVar(&c.Src, "src", "", "module root to build targets from (default: found from the cwd)")
	fs.IntVar(&c.PerWorker, "per-worker", 19000, "connections per client worker process (open-file limit is 20000 per process)")
	fs.IntVar(&c.Workers, "workers", 0, "client worker processes (0 = enough for the connection count)")
	fs.IntVar(&c.Loops, "loops", 1, "epoll loops (goroutines) per worker")
	fs.StringVar(&c.Sources, "sources", "auto", "source IPv4s to bind, comma-separated, shared round robin by workers; auto = 127.0.0.(2+worker)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 10*time.Second, "TCP connect + upgrade timeout")
	fs.DurationVar(&c.MinIteration, "batch", 0, "minimum client loop iteration (lets frames pile up per read; 0 = off; latency resolution gets coarser by up to this)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&c.Profile, "profile", false, "targets with pprof (the gateway): save a CPU profile of the measured window (and a heap profile for idle) under <out>/profiles/")
	fs.StringVar(&c.Ports, "ports", "10000-32767", "explicit client source-port range per source address (faster connect than the kernel's search); \"\" = kernel picks")
}

// Env is the state of one wsbench invocation.
type Env struct {
	Common
	Specs  []TargetSpec
	B      *Builder
	Run    report.Run
	OutDir string
	Params map[string]map[string]any // scenario -> its flag values
	// Round stamps the results (compare -repeat; 0 in a single run).
	Round int
}

// NewEnv parses targets, finds the module root and creates the output dir.
func NewEnv(c Common, command string) (*Env, error) {
	e := &Env{Common: c, Params: map[string]map[string]any{}}
	for _, t := range strings.Split(c.Targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		ts, err := ParseTarget(t)
		if err != nil {
			return nil, err
		}
		e.Specs = append(e.Specs, ts)
	}
	if len(e.Specs) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	b, err := NewBuilder(c.Src)
	if err != nil {
		return nil, err
	}
	e.B = b
	e.OutDir = c.Out
	if e.OutDir == "" {
		e.OutDir = filepath.Join(b.Root, "bench", "results", time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(e.OutDir, 0o755); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	e.Run = report.Run{Started: time.Now().UTC(), Command: command, Host: host}
	return e, nil
}

// Close removes temporary binaries.
func (e *Env) Close() { e.B.Cleanup() }

func (e *Env) logf(format string, a ...any) {
	if !e.Quiet {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

// Scenario is a registered scenario. Define registers its flags (with the
// given name prefix, "" for the scenario's own subcommand) and returns the
// function that runs it against one started target.
type Scenario struct {
	Name string
	Help string
	Mode string // server mode the target is started in
	// Self: the scenario starts (and stops) its server instances itself;
	// RunFunc gets an Instance with only Spec set. Targets whose Modes
	// lack Mode are left out of the run (no result).
	Self   bool
	Define func(fs *flag.FlagSet, prefix string) RunFunc
}

// RunFunc runs a scenario against one target instance.
type RunFunc func(e *Env, in *Instance, r *report.Result) error

var scenarios = map[string]*Scenario{}
var scenarioOrder []string

// RegisterScenario adds a scenario (the lead's JSON-protocol scenarios plug in here).
func RegisterScenario(s *Scenario) {
	if _, ok := scenarios[s.Name]; !ok {
		scenarioOrder = append(scenarioOrder, s.Name)
	}
	scenarios[s.Name] = s
}

// Scenarios lists registered scenario names in registration order.
func Scenarios() []*Scenario {
	var r []*Scenario
	for _, n := range scenarioOrder {
		r = append(r, scenarios[n])
	}
	return r
}

// Lookup returns a scenario by name.
func Lookup(name string) *Scenario { return scenarios[name] }

// FlagParams collects the values of flags with prefix into a map.
func FlagParams(fs *flag.FlagSet, prefix string) map[string]any {
	m := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, prefix) {
			return
		}
		n := strings.TrimPrefix(f.Name, prefix)
		if prefix == "" && strings.Contains(n, ".") {
			return
		}
		if g, ok := f.Value.(flag.Getter); ok {
			switch v := g.Get().(type) {
			case time.Duration:
				m[n] = v.String()
			default:
				m[n] = v
			}
		}
	})
	return m
}

// RunScenario runs s (already defined as run) against every target of e.
func (e *Env) RunScenario(s *Scenario, run RunFunc, params map[string]any) []report.Result {
	var out []report.Result
	for _, ts := range e.Specs {
		r := report.Result{Scenario: s.Name, Target: ts.Name, Status: "ok", Round: e.Round, Started: time.Now().UTC(), Params: params}
		if la, err := os.ReadFile("/proc/loadavg"); err == nil {
			r.LoadAvg = strings.TrimSpace(string(la))
		}
		t0 := time.Now()
		if !ts.Supports(s.Mode) {
			e.logf("== %s: %s has no %s mode, left out", s.Name, ts.Name, s.Mode)
			continue
		}
		e.logf("== %s against %s", s.Name, ts.Name)
		if s.Self {
			in := &Instance{Spec: ts}
			if err := run(e, in, &r); err != nil {
				r.Status, r.Error = "error", err.Error()
				e.logf("   error: %v", err)
			}
			r.WallS = time.Since(t0).Seconds()
			out = append(out, r)
			e.Run.Results = append(e.Run.Results, r)
			_ = e.Save()
			continue
		}
		in, err := StartWith(e.B, ts, s.Mode, e.pprofArgs(ts), filepath.Join(e.OutDir, "logs", s.Name+"-"+ts.Name+".log"))
		if err != nil {
			r.Status, r.Error = "skipped", err.Error()
			e.logf("   skipped: %v", err)
		} else {
			if err := run(e, in, &r); err != nil {
				r.Status, r.Error = "error", err.Error()
				e.logf("   error: %v", err)
			}
			if !in.Alive() {
				r.Notes = append(r.Notes, "server process died during the run")
				if r.Status == "ok" {
					r.Status = "error"
				}
			}
			in.Stop()
		}
		r.WallS = time.Since(t0).Seconds()
		out = append(out, r)
		e.Run.Results = append(e.Run.Results, r)
		_ = e.Save() // keep partial results on disk
	}
	return out
}

// Save writes results.json and the charts.
func (e *Env) Save() error {
	if err := report.WriteJSON(filepath.Join(e.OutDir, "results.json"), &e.Run); err != nil {
		return err
	}
	_, err := report.Charts(e.OutDir, firstRound(e.Run.Results))
	return err
}

// firstRound is the results of a single run, or of round 1 of a repeated
// one: the charts draw one round (the tables show medians and ranges).
func firstRound(rs []report.Result) []report.Result {
	var out []report.Result
	for _, r := range rs {
		if r.Round <= 1 {
			out = append(out, r)
		}
	}
	return out
}

// ---- helpers shared by scenarios ----

func split(n, parts int) []int {
	r := make([]int, parts)
	for i := range r {
		r[i] = n / parts
		if i < n%parts {
			r[i]++
		}
	}
	return r
}

func (e *Env) workersFor(n int) int {
	if e.Workers > 0 {
		return e.Workers
	}
	w := (n + e.PerWorker - 1) / e.PerWorker
	if w < 1 {
		w = 1
	}
	return w
}

func (e *Env) sourcesFor(i int) []string {
	if e.Sources == "" || e.Sources == "none" {
		return nil
	}
	if e.Sources == "auto" {
		return []string{fmt.Sprintf("127.0.0.%d", 2+i%250)}
	}
	all := strings.Split(e.Sources, ",")
	return []string{strings.TrimSpace(all[i%len(all)])}
}

// pool starts workers for n connections against in.
func (e *Env) pool(in *Instance, n int, codec string) (*Pool, []int, error) {
	var args map[string]string
	if codec == "" && in.Spec.Codec != "" {
		// the target speaks its own protocol (centrifugo)
		codec, args = in.Spec.Codec, map[string]string{"mode": in.Mode}
	}
	return e.poolOpts(poolOpts{addrs: []string{in.Addr}, path: in.Path, n: n, codec: codec, codecArgs: args})
}

type poolOpts struct {
	addrs        []string // host:port, round robin over connections
	path         string
	n            int
	codec        string
	codecArgs    map[string]string
	senderTarget int // >0: senders dial addrs[senderTarget-1]
}

func (e *Env) poolOpts(o poolOpts) (*Pool, []int, error) {
	n := o.n
	w := e.workersFor(n)
	per := split(n, w)
	base := make([]int, w)
	for i := 1; i < w; i++ {
		base[i] = base[i-1] + per[i-1]
	}
	var plo, phi int
	if e.Ports != "" && e.sourcesFor(0) != nil {
		if _, err := fmt.Sscanf(e.Ports, "%d-%d", &plo, &phi); err != nil {
			return nil, nil, fmt.Errorf("-ports %q: want LO-HI", e.Ports)
		}
	}
	p, err := StartPool(w, func(i int) WorkerInit {
		return WorkerInit{PortLo: plo, PortHi: phi, Targets: o.addrs, Path: o.path, Sources: e.sourcesFor(i), Loops: e.Loops,
			Codec: o.codec, CodecArgs: o.codecArgs, IDBase: base[i], SenderTarget: o.senderTarget,
			ConnectTimeoutMs: int(e.ConnectTimeout / time.Millisecond),
			MinIterationUs:   int(e.MinIteration / time.Microsecond)}
	})
	if err != nil {
		return nil, nil, err
	}
	return p, per, nil
}

func (e *Env) progress(p *Pool, label string, in sampler) {
	if e.Quiet {
		return
	}
	var last procstat.Sample
	lastT := time.Now()
	p.StartProgress(label, func() string {
		s := in.Sample()
		now := time.Now()
		cpu := 0.0
		if last.CPU > 0 {
			cpu = (s.CPU - last.CPU) / now.Sub(lastT).Seconds() * 100
		}
		last, lastT = s, now
		return fmt.Sprintf("srv rss=%s cpu=%.0f%%", report.Bytes(float64(s.RSS)), cpu)
	})
}

type merged struct {
	Stats
	conn, lat, lag, reopen *hist.Histogram
}

// collectStats asks every worker for its measurements and merges them.
func collectStats(pool *Pool) (*merged, error) {
	evs, err := pool.All(Cmd{Op: "collect"}, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return mergeStats(evs)
}

func mergeStats(evs []Event) (*merged, error) {
	m := &merged{conn: hist.New(), lat: hist.New(), lag: hist.New(), reopen: hist.New()}
	m.Failures = map[string]int64{}
	for _, ev := range evs {
		st := ev.Stats
		if st == nil {
			continue
		}
		m.Progress = addProgress(m.Progress, st.Progress)
		for k, v := range st.Failures {
			m.Failures[k] += v
		}
		for _, p := range []struct {
			dst *hist.Histogram
			src *hist.Snapshot
		}{{m.conn, st.ConnectHist}, {m.lat, st.LatencyHist}, {m.lag, st.LagHist}, {m.reopen, st.ReopenHist}} {
			h, err := hist.FromSnapshot(p.src)
			if err != nil {
				return nil, err
			}
			p.dst.Merge(h)
		}
		if st.FirstDialNs != 0 && (m.FirstDialNs == 0 || st.FirstDialNs < m.FirstDialNs) {
			m.FirstDialNs = st.FirstDialNs
		}
		m.LastOpenNs = max(m.LastOpenNs, st.LastOpenNs)
		m.LastReopenNs = max(m.LastReopenNs, st.LastReopenNs)
		m.TimedOut = m.TimedOut || st.TimedOut
	}
	if len(m.Failures) == 0 {
		m.Failures = nil
	}
	return m, nil
}

func summary(h *hist.Histogram) *hist.Summary {
	if h.Count() == 0 {
		return nil
	}
	s := h.Summarize()
	return &s
}

// connectAll opens per[i] connections in worker i (senders[i] of them send).
func connectAll(p *Pool, per, senders []int, inflight int, hold, reconnect bool, wait time.Duration) (*merged, error) {
	evs, err := p.Do(func(i int) Cmd {
		s := 0
		if senders != nil {
			s = senders[i]
		}
		return Cmd{Op: "connect", Total: per[i], Senders: s, InFlight: max(1, inflight/p.N()), Hold: hold, Reconnect: reconnect, WaitMs: int(wait / time.Millisecond)}
	}, wait+30*time.Second)
	if err != nil {
		return nil, err
	}
	return mergeStats(evs)
}

func sleepUntil(ns int64) {
	if d := time.Until(time.Unix(0, ns)); d > 0 {
		time.Sleep(d)
	}
}

func parseCounts(s string) ([]int, error) {
	var r []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		if strings.HasSuffix(f, "k") {
			mult, f = 1000, strings.TrimSuffix(f, "k")
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("bad count %q", f)
		}
		r = append(r, int(v*float64(mult)))
	}
	sort.Ints(r)
	return r, nil
}
