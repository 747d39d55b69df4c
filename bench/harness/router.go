package harness

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/bench/report"
)

// Router-mode scenarios: the gateway's JSON protocol (gw.json), JWT auth on
// the upgrade URL, rooms and user sends through the router and its NATS
// backplane. They start their gateway processes themselves (Scenario.Self)
// and only run against targets with a "router" mode.
func init() {
	RegisterScenario(&Scenario{Name: "room", Mode: "router", Self: true, Define: defineRoom,
		Help: "router room fan-out (JSON join/message, R receivers, P publishers) and, in the same run, raw -broadcast of the same size and counts; ratio router/raw"})
	RegisterScenario(&Scenario{Name: "p2p", Mode: "router", Self: true, Define: defineP2P,
		Help: "router user-to-user send: P senders, each message to one of R receivers (one token and user u<N> per connection)"})
	RegisterScenario(&Scenario{Name: "cross", Mode: "router", Self: true, Define: defineCross,
		Help: "cross-instance room fan-out: two gateways sharing NATS, receivers split, publishers on the first; then the same load on one gateway"})
	RegisterScenario(&Scenario{Name: "slow", Mode: "router", Self: true, Define: defineSlow,
		Help: "room fan-out with slow consumers (a fraction stops reading): deliveries and latency of the others, 4009 closes of the slow ones"})
}

// routerParams are the flags every router scenario has.
type routerParams struct {
	secret   *string
	tokens   *string
	maxQueue *int
	gwArgs   *string
	room     *string
}

func defineRouter(fs *flag.FlagSet, p string, maxQueue int) routerParams {
	return routerParams{
		secret:   fs.String(p+"jwt-secret", "wsbench-secret", "gateway -jwt-secret; tokens are minted with it (HS256, 24h)"),
		tokens:   fs.String(p+"tokens", "per-conn", "per-conn: one token per connection (sub u<N>, minted in the workers); shared: one token (sub bench) for all"),
		maxQueue: fs.Int(p+"max-queue-bytes", maxQueue, "gateway -max-queue-bytes (outbound queue past which a receiver is closed with 4009)"),
		gwArgs:   fs.String(p+"gateway-args", "", "extra gateway flags (space-separated), e.g. \"-loops 2 -gogc 50\""),
		room:     fs.String(p+"room", "bench", "room name"),
	}
}

// routerArgs are the gateway flags of a router-mode benchmark instance:
// rate limits off (0 = unlimited), no idle timeout, the queue limit given.
func (rp routerParams) args(natsArgs ...string) []string {
	a := []string{"-jwt-secret", *rp.secret, "-rate-msgs", "0", "-rate-bytes", "0",
		"-max-queue-bytes", strconv.Itoa(*rp.maxQueue), "-idle-timeout", "0", "-max-subscriptions", "16"}
	a = append(a, natsArgs...)
	return append(a, strings.Fields(*rp.gwArgs)...)
}

func (rp routerParams) codecArgs(mode string) map[string]string {
	a := map[string]string{"mode": mode, "room": *rp.room, "secret": *rp.secret}
	if *rp.tokens == "shared" {
		tok, err := MintToken(*rp.secret, "bench")
		if err == nil {
			a["token"] = tok
		}
	}
	return a
}

// startRouter starts ts in router mode with an embedded NATS server on a
// free port (or joined to natsURL when set).
func (e *Env) startRouter(ts TargetSpec, rp routerParams, name, natsURL string) (*Instance, string, error) {
	logPath := filepath.Join(e.OutDir, "logs", name+".log")
	if ts.URL != "" {
		in, err := Start(e.B, ts, "router", logPath)
		return in, "", err
	}
	var nats []string
	natsAddr := ""
	if natsURL != "" {
		nats = []string{"-nats-url", natsURL}
	} else {
		var err error
		if natsAddr, err = freePort(); err != nil {
			return nil, "", err
		}
		nats = []string{"-nats-listen", natsAddr}
	}
	in, err := StartWith(e.B, ts, "router", append(rp.args(nats...), e.pprofArgs(ts)...), logPath)
	if err != nil {
		return nil, "", err
	}
	if natsAddr != "" {
		if err := waitTCP(natsAddr, 10*time.Second, in.exit); err != nil {
			in.Stop()
			return nil, "", fmt.Errorf("embedded NATS on %s: %w", natsAddr, err)
		}
	}
	return in, natsAddr, nil
}

// fanLoad is one measured room (or raw broadcast) run against addrs.
type fanLoad struct {
	addrs        []string
	path         string
	codec        string
	codecArgs    map[string]string
	receivers    int
	pubs         int
	slow         int
	senderTarget int
	p2p          bool
}

func (e *Env) runFan(srv sampler, label string, fl fanLoad, mp msgParams, r *report.Result) (*Pool, error) {
	total := fl.receivers + fl.pubs
	pool, per, err := e.poolOpts(poolOpts{addrs: fl.addrs, path: fl.path, n: total, codec: fl.codec, codecArgs: fl.codecArgs, senderTarget: fl.senderTarget})
	if err != nil {
		return nil, err
	}
	r.Workers = pool.N()
	senders := make([]int, len(per))
	slow := make([]int, len(per))
	left := fl.pubs
	for i := range per {
		senders[i] = min(left, per[i])
		left -= senders[i]
	}
	// slow receivers: spread over the workers in proportion to their receivers
	if fl.slow > 0 {
		sl := fl.slow
		for i := range per {
			rc := per[i] - senders[i]
			want := int(math.Round(float64(fl.slow) * float64(rc) / float64(fl.receivers)))
			slow[i] = min(want, rc, sl)
			sl -= slow[i]
		}
		for i := 0; sl > 0 && i < len(per); i++ {
			add := min(sl, per[i]-senders[i]-slow[i])
			slow[i] += add
			sl -= add
		}
	}
	e.progress(pool, label, srv)
	evs, err := pool.Do(func(i int) Cmd {
		return Cmd{Op: "connect", Total: per[i], Senders: senders[i], Slow: slow[i], InFlight: max(1, *mp.inflight/pool.N()), Hold: true, WaitMs: int(time.Minute / time.Millisecond)}
	}, time.Minute+30*time.Second)
	if err != nil {
		pool.Close()
		return nil, err
	}
	m, err := mergeStats(evs)
	if err != nil {
		pool.Close()
		return nil, err
	}
	open := m.Open
	r.Conns = int(open)
	if open < int64(total) {
		r.Notes = append(r.Notes, fmt.Sprintf("only %d of %d connections open", open, total))
	}
	if fl.codec == "json" {
		// wait for every join (room) or auth:ok (p2p)
		deadline := time.Now().Add(30 * time.Second)
		for {
			pr, err := pool.Poll()
			if err != nil {
				pool.Close()
				return nil, err
			}
			if pr.Ready >= pr.Open {
				break
			}
			if time.Now().After(deadline) {
				r.Notes = append(r.Notes, fmt.Sprintf("only %d of %d connections ready (joined) after 30 s", pr.Ready, pr.Open))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	slowN := int64(0)
	for _, s := range slow {
		slowN += int64(s)
	}
	r.SlowConns = int(slowN)
	expected := func(s int64) int64 { return s * (open - 1 - slowN) }
	if fl.p2p {
		expected = func(s int64) int64 { return s }
	}
	if fl.codec == "json" {
		*mp.text = true
	}
	if err := runPaced(e, srv, pool, mp, senders, fl.pubs, r, expected); err != nil {
		pool.Close()
		return nil, err
	}
	if pr, err := pool.Poll(); err == nil {
		r.ProtocolErrors = pr.Errors
		if pr.Errors > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d error replies from the gateway", pr.Errors))
		}
	}
	return pool, nil
}

func gatewayMetrics(r *report.Result, ins ...*Instance) {
	for _, in := range ins {
		m := scrapeMetrics(in.Admin, `wsgate_closes_total{code="4009"}`, "wsgate_slow_consumers_total", "wsgate_backplane_received_total", "wsgate_backplane_published_total", "wsgate_backplane_dropped_total")
		if len(m) == 0 {
			continue
		}
		if r.ServerMetrics == nil {
			r.ServerMetrics = map[string]int64{}
		}
		for k, v := range m {
			r.ServerMetrics[k] += v
		}
	}
}

func defineRoom(fs *flag.FlagSet, p string) RunFunc {
	recv := fs.Int(p+"receivers", 5000, "receiving connections (all join the room)")
	pubs := fs.Int(p+"publishers", 5, "publishing connections (members too: they receive each other's messages)")
	raw := fs.Bool(p+"raw", true, "also run gateway -broadcast with the same counts, rate and payload size (the raw baseline)")
	rp := defineRouter(fs, p, 8<<20)
	mp := defineMsg(fs, p, 200, 5*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		*mp.size = max(*mp.size, MinJSONSize)
		r.Instances = 1
		gw, _, err := e.startRouter(in.Spec, rp, "room-"+in.Spec.Name, "")
		if err != nil {
			return err
		}
		pool, err := e.runFan(gw, "room "+in.Spec.Name, fanLoad{addrs: []string{gw.Addr}, path: gw.Path, codec: "json", codecArgs: rp.codecArgs("room"), receivers: *recv, pubs: *pubs}, mp, r)
		gatewayMetrics(r, gw)
		if pool != nil {
			_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
			pool.Close()
		}
		alive := gw.Alive()
		gw.Stop()
		if err != nil {
			return err
		}
		if !alive {
			return fmt.Errorf("gateway died during the run (see logs/room-%s.log)", in.Spec.Name)
		}
		if !*raw || in.Spec.URL != "" {
			return nil
		}
		// the raw baseline, same sizes (binary frames: the payload is the data string's size)
		rr := report.Result{Scenario: r.Scenario, Target: in.Spec.Name + "-raw", Status: "ok", Round: r.Round, Started: time.Now().UTC(), Params: r.Params, LoadAvg: loadAvg(), Instances: 1}
		t0 := time.Now()
		func() {
			bin, err := StartWith(e.B, in.Spec, "broadcast", e.pprofArgs(in.Spec), filepath.Join(e.OutDir, "logs", "room-"+in.Spec.Name+"-raw.log"))
			if err != nil {
				rr.Status, rr.Error = "error", err.Error()
				return
			}
			defer bin.Stop()
			text := *mp.text
			*mp.text = false
			pool, err := e.runFan(bin, "room-raw "+in.Spec.Name, fanLoad{addrs: []string{bin.Addr}, path: bin.Path, codec: "", receivers: *recv, pubs: *pubs}, mp, &rr)
			*mp.text = text
			if pool != nil {
				_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
				pool.Close()
			}
			if err != nil {
				rr.Status, rr.Error = "error", err.Error()
			}
		}()
		rr.WallS = time.Since(t0).Seconds()
		e.Run.Results = append(e.Run.Results, rr)
		if r.DeliveriesPerSec > 0 && rr.DeliveriesPerSec > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("router/raw deliveries/s = %.2fx (goal >= 0.8x)", r.DeliveriesPerSec/rr.DeliveriesPerSec))
		}
		return nil
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func defineP2P(fs *flag.FlagSet, p string) RunFunc {
	recv := fs.Int(p+"receivers", 5000, "receiving connections (users u<N>)")
	pubs := fs.Int(p+"senders", 50, "sending connections; each message goes to one receiver, round robin")
	rp := defineRouter(fs, p, 8<<20)
	mp := defineMsg(fs, p, 20000, 3*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		if *rp.tokens == "shared" {
			return fmt.Errorf("p2p needs -tokens per-conn (distinct users)")
		}
		*mp.size = max(*mp.size, MinJSONSize)
		r.Instances = 1
		gw, _, err := e.startRouter(in.Spec, rp, "p2p-"+in.Spec.Name, "")
		if err != nil {
			return err
		}
		defer gw.Stop()
		ca := rp.codecArgs("p2p")
		ca["recv_lo"], ca["recv_n"] = strconv.Itoa(*pubs), strconv.Itoa(*recv)
		pool, err := e.runFan(gw, "p2p "+in.Spec.Name, fanLoad{addrs: []string{gw.Addr}, path: gw.Path, codec: "json", codecArgs: ca, receivers: *recv, pubs: *pubs, p2p: true}, mp, r)
		gatewayMetrics(r, gw)
		if pool != nil {
			_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
			pool.Close()
		}
		if err == nil && !gw.Alive() {
			err = fmt.Errorf("gateway died during the run")
		}
		return err
	}
}

func defineCross(fs *flag.FlagSet, p string) RunFunc {
	recv := fs.Int(p+"receivers", 5000, "receiving connections, split evenly over the two gateways")
	pubs := fs.Int(p+"publishers", 5, "publishing connections, all on the first gateway")
	single := fs.Bool(p+"single", true, "then run the same load against one gateway (the baseline)")
	rp := defineRouter(fs, p, 8<<20)
	mp := defineMsg(fs, p, 200, 5*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		if in.Spec.URL != "" {
			return fmt.Errorf("cross needs targets the harness starts")
		}
		*mp.size = max(*mp.size, MinJSONSize)
		r.Instances = 2
		a, natsAddr, err := e.startRouter(in.Spec, rp, "cross-"+in.Spec.Name+"-a", "")
		if err != nil {
			return err
		}
		b, _, err := e.startRouter(in.Spec, rp, "cross-"+in.Spec.Name+"-b", "nats://"+natsAddr)
		if err != nil {
			a.Stop()
			return err
		}
		// the backplane subscription of b must be live before publishing
		time.Sleep(300 * time.Millisecond)
		pool, err := e.runFan(instances{a, b}, "cross "+in.Spec.Name, fanLoad{addrs: []string{a.Addr, b.Addr}, path: a.Path, codec: "json", codecArgs: rp.codecArgs("room"),
			receivers: *recv, pubs: *pubs, senderTarget: 1}, mp, r)
		gatewayMetrics(r, a, b)
		if pool != nil {
			_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
			pool.Close()
		}
		alive := a.Alive() && b.Alive()
		b.Stop()
		a.Stop()
		if err != nil {
			return err
		}
		if !alive {
			return fmt.Errorf("a gateway died during the run")
		}
		if !*single {
			return nil
		}
		rs := report.Result{Scenario: r.Scenario, Target: in.Spec.Name + "-single", Status: "ok", Round: r.Round, Started: time.Now().UTC(), Params: r.Params, LoadAvg: loadAvg(), Instances: 1}
		t0 := time.Now()
		func() {
			gw, _, err := e.startRouter(in.Spec, rp, "cross-"+in.Spec.Name+"-single", "")
			if err != nil {
				rs.Status, rs.Error = "error", err.Error()
				return
			}
			defer gw.Stop()
			pool, err := e.runFan(gw, "cross-single "+in.Spec.Name, fanLoad{addrs: []string{gw.Addr}, path: gw.Path, codec: "json", codecArgs: rp.codecArgs("room"), receivers: *recv, pubs: *pubs}, mp, &rs)
			gatewayMetrics(&rs, gw)
			if pool != nil {
				_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
				pool.Close()
			}
			if err != nil {
				rs.Status, rs.Error = "error", err.Error()
			}
		}()
		rs.WallS = time.Since(t0).Seconds()
		e.Run.Results = append(e.Run.Results, rs)
		if r.DeliveriesPerSec > 0 && rs.DeliveriesPerSec > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("two instances / one instance deliveries/s = %.2fx (goal >= 0.8x)", r.DeliveriesPerSec/rs.DeliveriesPerSec))
		}
		return nil
	}
}

func defineSlow(fs *flag.FlagSet, p string) RunFunc {
	// Per-receiver bandwidth B (rate x size) and the queue limit Q decide
	// the test: a slow receiver is closed after about Q/B seconds (plus
	// what the socket buffers hold), a healthy one must never lag that far.
	// Defaults: B = 400 KB/s, Q = 768 KiB: ~2.5 s; the healthy ones lag
	// < 0.1 s on an idle machine.
	recv := fs.Int(p+"receivers", 200, "receiving connections")
	frac := fs.Float64(p+"slow-fraction", 0.1, "fraction of the receivers that stop reading for the measured window")
	pubs := fs.Int(p+"publishers", 4, "publishing connections")
	settle := fs.Duration(p+"settle", 5*time.Second, "after the window, wait this long for the slow receivers (reading again) to see their close")
	sndbuf := fs.Int(p+"sndbuf", 65536, "gateway -sndbuf (a fixed SO_SNDBUF: without it loopback autotuning lets the kernel absorb megabytes per slow receiver before the gateway's queue grows)")
	rp := defineRouter(fs, p, 768<<10)
	mp := defineMsgSize(fs, p, 400, 1000, 5*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		*mp.size = max(*mp.size, MinJSONSize)
		r.Instances = 1
		if *sndbuf > 0 {
			ga := *rp.gwArgs + " -sndbuf " + strconv.Itoa(*sndbuf)
			rp.gwArgs = &ga
		}
		gw, _, err := e.startRouter(in.Spec, rp, "slow-"+in.Spec.Name, "")
		if err != nil {
			return err
		}
		defer gw.Stop()
		nSlow := int(math.Round(float64(*recv) * *frac))
		pool, err := e.runFan(gw, "slow "+in.Spec.Name, fanLoad{addrs: []string{gw.Addr}, path: gw.Path, codec: "json", codecArgs: rp.codecArgs("room"), receivers: *recv, pubs: *pubs, slow: nSlow}, mp, r)
		if err != nil {
			return err
		}
		defer pool.Close()
		// the slow ones read again since the end of the window: give them time
		// to read through their backlog and the close frame
		deadline := time.Now().Add(*settle)
		for time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
		m, err := collectStats(pool)
		if err != nil {
			return err
		}
		r.SlowReceived = m.SlowRecv
		r.SlowCloses = map[string]int64{}
		r.Failures = map[string]int64{}
		for k, v := range m.Failures {
			if rest, ok := strings.CutPrefix(k, "slow dropped:"); ok {
				r.SlowCloses[rest] += v
				if rest == "server-close 4009" {
					r.SlowClosed4009 += v
				}
			} else {
				r.Failures[k] = v
			}
		}
		if len(r.Failures) == 0 {
			r.Failures = nil
		}
		gatewayMetrics(r, gw)
		r.Notes = append(r.Notes, fmt.Sprintf("slow receivers: %d; gateway sent 4009 to %d connections (/metrics); slow receivers saw: %v (a close frame queued behind the backlog is never read: \"closed\" = EOF); healthy receivers dropped: %v",
			r.SlowConns, r.ServerMetrics[`wsgate_closes_total{code="4009"}`], r.SlowCloses, r.Failures))
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		if !gw.Alive() {
			return fmt.Errorf("gateway died during the run")
		}
		return nil
	}
}
