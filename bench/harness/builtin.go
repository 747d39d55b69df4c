package harness

import (
	"flag"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/bench/report"
)

func init() {
	RegisterScenario(&Scenario{Name: "idle", Mode: "echo", Help: "idle density: hold N idle connections, sample server RSS at several counts, bytes/conn = least-squares slope", Define: defineIdle})
	RegisterScenario(&Scenario{Name: "connect", Mode: "echo", Help: "connect storm: N connections as fast as possible; upgrades/s and failures by reason", Define: defineConnect})
	RegisterScenario(&Scenario{Name: "echo", Mode: "echo", Help: "echo round trip at a fixed offered rate (open loop, latency from the intended send time)", Define: defineEcho})
	RegisterScenario(&Scenario{Name: "broadcast", Mode: "broadcast", Help: "fan-out: R receivers, P publishers at a fixed total rate; deliveries/s and end-to-end latency", Define: defineBroadcast})
	RegisterScenario(&Scenario{Name: "reconnect", Mode: "echo", Help: "reconnect storm: hold N connections, SIGKILL + restart the server, time until all are back", Define: defineReconnect})
}

func defineConnect(fs *flag.FlagSet, p string) RunFunc {
	n := fs.Int(p+"conns", 19000, "connections to open (a target process holds < 20000)")
	inflight := fs.Int(p+"inflight", 500, "concurrent dials in flight (all workers; more than the server accepts per SYN-retransmit time shows up as 1 s connect latencies)")
	hold := fs.Bool(p+"hold", true, "keep connections open; -hold=false closes each right after its upgrade (churn: allows more than 20k)")
	wait := fs.Duration(p+"wait", 60*time.Second, "give up after this")
	return func(e *Env, in *Instance, r *report.Result) error {
		pool, per, err := e.pool(in, *n, "")
		if err != nil {
			return err
		}
		defer pool.Close()
		r.Workers = pool.N()
		e.progress(pool, "connect "+in.Spec.Name, in)
		s0 := in.Sample()
		m, err := connectAll(pool, per, nil, *inflight, *hold, false, *wait)
		if err != nil {
			return err
		}
		s1 := in.Sample()
		r.Conns = *n
		r.Upgrades = int64(m.conn.Count())
		if m.LastOpenNs > m.FirstDialNs && r.Upgrades > 0 {
			r.UpgradesPerSec = float64(r.Upgrades) / (float64(m.LastOpenNs-m.FirstDialNs) / 1e9)
		}
		r.ConnectLatency = summary(m.conn)
		r.Failures = m.Failures
		r.ServerCPUSec = s1.CPU - s0.CPU
		r.ServerRSS = s1.RSS
		r.ClientCPUSec = pool.ClientSample().CPU
		if m.TimedOut {
			r.Notes = append(r.Notes, "connect phase timed out")
		}
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		return nil
	}
}

func defineIdle(fs *flag.FlagSet, p string) RunFunc {
	counts := fs.String(p+"counts", "0,2000,5000,10000,19000", "connection counts at which to sample server RSS (k suffix ok)")
	settle := fs.Duration(p+"settle", 2*time.Second, "wait after reaching a count before sampling RSS")
	inflight := fs.Int(p+"inflight", 1000, "concurrent dials in flight")
	return func(e *Env, in *Instance, r *report.Result) error {
		cs, err := parseCounts(*counts)
		if err != nil || len(cs) == 0 {
			return fmt.Errorf("-counts: %v", err)
		}
		maxN := cs[len(cs)-1]
		pool, _, err := e.pool(in, maxN, "")
		if err != nil {
			return err
		}
		defer pool.Close()
		r.Workers = pool.N()
		e.progress(pool, "idle "+in.Spec.Name, in)
		var xs, ys, cys []float64
		for _, c := range cs {
			per := split(c, pool.N())
			m, err := connectAll(pool, per, nil, *inflight, true, false, 2*time.Minute)
			if err != nil {
				return err
			}
			time.Sleep(*settle)
			// median of three samples
			var ss, cl []int64
			for k := 0; k < 3; k++ {
				ss = append(ss, in.Sample().RSS)
				cl = append(cl, pool.ClientSample().RSS)
				time.Sleep(200 * time.Millisecond)
			}
			pr, err := pool.Poll()
			if err != nil {
				return err
			}
			smp := report.RSSSample{Conns: int(pr.Open), ServerRSS: median(ss), ClientRSS: median(cl)}
			r.IdleSamples = append(r.IdleSamples, smp)
			xs = append(xs, float64(smp.Conns))
			ys = append(ys, float64(smp.ServerRSS))
			cys = append(cys, float64(smp.ClientRSS))
			e.logf("   idle %s: %d open -> server RSS %s, client RSS %s", in.Spec.Name, smp.Conns, report.Bytes(float64(smp.ServerRSS)), report.Bytes(float64(smp.ClientRSS)))
			r.Failures = m.Failures
			if int(pr.Open) < c {
				r.Notes = append(r.Notes, fmt.Sprintf("wanted %d connections, %d open", c, pr.Open))
			}
		}
		if e.Profile {
			e.saveProfile(in, r, "heap", "/debug/pprof/heap?gc=1")
		}
		slope, icpt := report.LeastSquares(xs, ys)
		r.BytesPerConn = slope
		r.BaselineRSS = int64(icpt)
		if len(r.IdleSamples) > 0 && r.IdleSamples[0].Conns == 0 {
			r.BaselineRSS = r.IdleSamples[0].ServerRSS
		}
		r.ClientBytesPerConn, _ = report.LeastSquares(xs, cys)
		r.BytesPerConnMarginal = marginalSlope(xs, ys)
		r.Conns = r.IdleSamples[len(r.IdleSamples)-1].Conns
		r.ServerRSS = r.IdleSamples[len(r.IdleSamples)-1].ServerRSS
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		return nil
	}
}

// marginalSlope is the least-squares slope of ys over the samples with
// connections (xs > 0), leaving out the one-time costs the first
// connections pay; 0 when fewer than two such samples.
func marginalSlope(xs, ys []float64) float64 {
	var mx, my []float64
	for i, x := range xs {
		if x > 0 {
			mx, my = append(mx, x), append(my, ys[i])
		}
	}
	if len(mx) < 2 {
		return 0
	}
	slope, _ := report.LeastSquares(mx, my)
	return slope
}

func median(v []int64) int64 {
	for i := range v {
		for j := i + 1; j < len(v); j++ {
			if v[j] < v[i] {
				v[i], v[j] = v[j], v[i]
			}
		}
	}
	return v[len(v)/2]
}

// msgParams are the flags of the paced-message scenarios.
type msgParams struct {
	rate          *float64
	size          *int
	duration      *time.Duration
	warmup, drain *time.Duration
	text          *bool
	inflight      *int
}

func defineMsg(fs *flag.FlagSet, p string, rate float64, drain time.Duration) msgParams {
	return defineMsgSize(fs, p, rate, 64, drain)
}

func defineMsgSize(fs *flag.FlagSet, p string, rate float64, size int, drain time.Duration) msgParams {
	return msgParams{
		rate:     fs.Float64(p+"rate", rate, "offered messages per second, all senders together"),
		size:     fs.Int(p+"size", size, fmt.Sprintf("payload bytes (min %d raw: send time, magic, sequence; router scenarios: bytes of the data string, min %d)", MinRawSize, MinJSONSize)),
		duration: fs.Duration(p+"duration", 10*time.Second, "measured window"),
		warmup:   fs.Duration(p+"warmup", time.Second, "paced sending before the measured window"),
		drain:    fs.Duration(p+"drain", drain, "max wait for in-flight messages after the window"),
		text:     fs.Bool(p+"text", false, "send text frames instead of binary"),
		inflight: fs.Int(p+"inflight", 1000, "concurrent dials while connecting"),
	}
}

// runPaced runs the paced phase and fills the message fields of r.
// expected computes the deliveries expected from the messages sent in the window.
func runPaced(e *Env, in sampler, pool *Pool, mp msgParams, sendersPer []int, totalSenders int, r *report.Result, expected func(sentWindow int64) int64) error {
	start := time.Now().Add(300 * time.Millisecond).UnixNano()
	from := start + int64(*mp.warmup)
	to := from + int64(*mp.duration)
	_, err := pool.Do(func(i int) Cmd {
		return Cmd{Op: "run", StartNs: start, DurationNs: to - start, Rate: *mp.rate * float64(sendersPer[i]) / float64(totalSenders),
			MsgSize: *mp.size, Text: *mp.text, MeasureFrom: from, MeasureTo: to}
	}, 10*time.Second)
	if err != nil {
		return err
	}
	sleepUntil(from)
	prof := e.profileWindow(in, r, *mp.duration)
	s0, c0 := in.Sample(), pool.ClientSample()
	p0, err := pool.Poll()
	if err != nil {
		return err
	}
	sleepUntil(to)
	s1, c1 := in.Sample(), pool.ClientSample()
	prof()
	p1, err := pool.Poll()
	if err != nil {
		return err
	}
	// drain: wait for the window's messages, stop early when nothing moves for 1 s
	var pr Progress
	deadline := time.Now().Add(*mp.drain)
	lastRecv, lastMove := int64(-1), time.Now()
	for {
		pr, err = pool.Poll()
		if err != nil {
			return err
		}
		if pr.RecvWindow >= expected(pr.SentWindow) || time.Now().After(deadline) {
			break
		}
		if pr.RecvWindow != lastRecv {
			lastRecv, lastMove = pr.RecvWindow, time.Now()
		} else if time.Since(lastMove) > time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, err := collectStats(pool)
	if err != nil {
		return err
	}
	win := float64(*mp.duration) / 1e9
	r.OfferedRate = *mp.rate
	r.Sent = m.SentWindow
	r.SentRate = float64(m.SentWindow) / win
	r.Received = m.RecvWindow
	r.Expected = expected(m.SentWindow)
	r.Lost = r.Expected - r.Received
	r.Duplicates = m.Dups
	// throughput: everything received while the window ran (under overload
	// this includes backlog from the warmup; latency covers the window's own messages)
	r.DeliveriesPerSec = float64(p1.Recv-p0.Recv) / win
	r.Latency = summary(m.lat)
	r.LatencyHist = m.lat.Snapshot()
	r.SendLag = summary(m.lag)
	r.ServerCPUSec = s1.CPU - s0.CPU
	if m.RecvWindow > 0 {
		r.ServerCPUPerMsgUs = r.ServerCPUSec / float64(m.RecvWindow) * 1e6
	}
	r.ServerRSS = s1.RSS
	r.ClientCPUSec = c1.CPU - c0.CPU
	if m.Failures != nil {
		r.Failures = m.Failures
	}
	if pr.SendFailed > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d sends skipped (connection closed)", pr.SendFailed))
	}
	if pr.Other > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d foreign data messages", pr.Other))
	}
	if r.Duplicates > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d duplicate deliveries (a seq the connection already had): not counted as received, not in the percentiles", r.Duplicates))
	}
	if r.Lost > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d expected messages (%.1f%%) not received within the drain time; latency percentiles cover delivered messages only", r.Lost, r.Expected, 100*float64(r.Lost)/float64(max(r.Expected, 1))))
	}
	return nil
}

func defineEcho(fs *flag.FlagSet, p string) RunFunc {
	n := fs.Int(p+"conns", 1000, "connections, all of them send")
	mp := defineMsg(fs, p, 20000, 3*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		pool, per, err := e.pool(in, *n, "")
		if err != nil {
			return err
		}
		defer pool.Close()
		r.Workers = pool.N()
		e.progress(pool, "echo "+in.Spec.Name, in)
		m, err := connectAll(pool, per, per, *mp.inflight, true, false, time.Minute)
		if err != nil {
			return err
		}
		r.Conns = int(m.Open)
		if m.Open < int64(*n) {
			r.Notes = append(r.Notes, fmt.Sprintf("only %d of %d connections open", m.Open, *n))
		}
		if err := runPaced(e, in, pool, mp, per, *n, r, func(s int64) int64 { return s }); err != nil {
			return err
		}
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		return nil
	}
}

func defineBroadcast(fs *flag.FlagSet, p string) RunFunc {
	recv := fs.Int(p+"receivers", 5000, "receiving connections")
	pubs := fs.Int(p+"publishers", 5, "publishing connections (they receive each other's messages too)")
	mp := defineMsg(fs, p, 200, 5*time.Second)
	return func(e *Env, in *Instance, r *report.Result) error {
		total := *recv + *pubs
		pool, per, err := e.pool(in, total, "")
		if err != nil {
			return err
		}
		defer pool.Close()
		r.Workers = pool.N()
		// the first `pubs` global connection ids publish: worker 0 first
		senders := make([]int, len(per))
		left := *pubs
		for i := range per {
			senders[i] = min(left, per[i])
			left -= senders[i]
		}
		e.progress(pool, "broadcast "+in.Spec.Name, in)
		m, err := connectAll(pool, per, senders, *mp.inflight, true, false, time.Minute)
		if err != nil {
			return err
		}
		open := m.Open
		r.Conns = int(open)
		if open < int64(total) {
			r.Notes = append(r.Notes, fmt.Sprintf("only %d of %d connections open", open, total))
		}
		// give the server a moment to register the last subscribers
		time.Sleep(200 * time.Millisecond)
		others := open - 1
		if in.Spec.SelfDelivery {
			others = open // a pub/sub server delivers to the publisher too
		}
		if err := runPaced(e, in, pool, mp, senders, *pubs, r, func(s int64) int64 { return s * others }); err != nil {
			return err
		}
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		return nil
	}
}

func defineReconnect(fs *flag.FlagSet, p string) RunFunc {
	n := fs.Int(p+"conns", 10000, "connections to hold across the restart")
	inflight := fs.Int(p+"inflight", 1000, "concurrent dials while connecting initially")
	wait := fs.Duration(p+"wait", 60*time.Second, "give up waiting for all clients after this")
	return func(e *Env, in *Instance, r *report.Result) error {
		if in.cmd == nil {
			return fmt.Errorf("reconnect needs a target the harness starts itself")
		}
		pool, per, err := e.pool(in, *n, "")
		if err != nil {
			return err
		}
		defer pool.Close()
		r.Workers = pool.N()
		e.progress(pool, "reconnect "+in.Spec.Name, in)
		m, err := connectAll(pool, per, nil, *inflight, true, true, 2*time.Minute)
		if err != nil {
			return err
		}
		r.Conns = int(m.Open)
		before, err := pool.Poll()
		if err != nil {
			return err
		}
		kill := time.Now().UnixNano()
		if _, err := pool.All(Cmd{Op: "mark", RefNs: kill}, 10*time.Second); err != nil {
			return err
		}
		in.Kill()
		// restart like a supervisor would: retry while the new process fails
		// to start (e.g. "bind: address already in use" without SO_REUSEADDR)
		attempts := 0
		for {
			attempts++
			err := in.Restart()
			if err == nil {
				break
			}
			if time.Since(time.Unix(0, kill)) > *wait {
				return fmt.Errorf("restart (%d attempts): %w", attempts, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if attempts > 1 {
			r.Notes = append(r.Notes, fmt.Sprintf("server needed %d start attempts after the kill (see its log; bind without SO_REUSEADDR?)", attempts))
		}
		ready := time.Now().UnixNano()
		r.ServerDownMs = float64(ready-kill) / 1e6
		deadline := time.Now().Add(*wait)
		var pr Progress
		for {
			pr, err = pool.Poll()
			if err != nil {
				return err
			}
			if pr.Reopened >= int64(r.Conns) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mm, err := collectStats(pool)
		if err != nil {
			return err
		}
		r.Reconnected = int64(mm.reopen.Count())
		r.ReconnectLatency = summary(mm.reopen)
		if mm.LastReopenNs > 0 {
			r.ReconnectAllMs = float64(mm.LastReopenNs-kill) / 1e6
		}
		r.DialAttempts = pr.Dials - before.Dials
		r.Failures = mm.Failures
		if r.Reconnected < int64(r.Conns) {
			r.Notes = append(r.Notes, fmt.Sprintf("only %d of %d reconnected within %v", r.Reconnected, r.Conns, *wait))
			r.ReconnectAllMs = 0
		}
		_, _ = pool.All(Cmd{Op: "closeall"}, time.Minute)
		return nil
	}
}
