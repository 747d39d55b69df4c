package harness

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench/report"
)

// The test binary doubles as the worker: WorkerCommand re-executes it with
// WSBENCH_TEST_WORKER=1.
func TestMain(m *testing.M) {
	if os.Getenv("WSBENCH_TEST_WORKER") == "1" {
		if err := WorkerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	WorkerCommand = func() (*exec.Cmd, error) {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), "WSBENCH_TEST_WORKER=1")
		return c, nil
	}
	os.Exit(m.Run())
}

// server is an in-process gorilla server in echo or broadcast mode.
func server(t *testing.T, broadcast bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[*websocket.Conn]*sync.Mutex{}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wmu := &sync.Mutex{}
		mu.Lock()
		conns[c] = wmu
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if !broadcast {
				if c.WriteMessage(mt, p) != nil {
					return
				}
				continue
			}
			mu.Lock()
			for o, om := range conns {
				if o != c {
					om.Lock()
					_ = o.WriteMessage(mt, p)
					om.Unlock()
				}
			}
			mu.Unlock()
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func testEnv(t *testing.T, targets string) *Env {
	t.Helper()
	e, err := NewEnv(Common{Targets: targets, Out: t.TempDir(), PerWorker: 4, Loops: 2, Sources: "auto",
		ConnectTimeout: 5 * time.Second, Quiet: true}, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func runOne(t *testing.T, e *Env, name string, args ...string) report.Result {
	t.Helper()
	s := Lookup(name)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	run := s.Define(fs, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	rs := e.RunScenario(s, run, FlagParams(fs, ""))
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	r := rs[0]
	if r.Status != "ok" {
		t.Fatalf("%s: status %s: %s %v", name, r.Status, r.Error, r.Notes)
	}
	return r
}

func TestEchoScenario(t *testing.T) {
	addr := server(t, false)
	e := testEnv(t, fmt.Sprintf("inproc=ws://%s/ws#%d", addr, os.Getpid()))
	// 6 connections over 2 workers (4 per worker), 2 loops each
	r := runOne(t, e, "echo", "-conns", "6", "-rate", "300", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Workers != 2 || r.Conns != 6 {
		t.Fatalf("workers %d conns %d", r.Workers, r.Conns)
	}
	if r.Sent < 290 || r.Sent > 310 {
		t.Fatalf("sent %d in a 1 s window at 300/s", r.Sent)
	}
	if r.Received != r.Sent || r.Expected != r.Sent || r.Lost != 0 {
		t.Fatalf("sent %d received %d expected %d lost %d", r.Sent, r.Received, r.Expected, r.Lost)
	}
	if r.Latency == nil || r.Latency.Count != uint64(r.Received) || r.Latency.P50 <= 0 || r.Latency.Max > int64(3*time.Second) {
		t.Fatalf("latency %+v", r.Latency)
	}
	if r.ServerRSS == 0 {
		t.Fatal("server RSS not sampled")
	}
	if err := e.Save(); err != nil {
		t.Fatal(err)
	}
	back, err := report.ReadRun(filepath.Join(e.OutDir, "results.json"))
	if err != nil || len(back.Results) != 1 || back.Results[0].Received != r.Received {
		t.Fatalf("results.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.OutDir, "latency-echo.svg")); err != nil {
		t.Fatal(err)
	}
}

func TestBroadcastScenario(t *testing.T) {
	addr := server(t, true)
	e := testEnv(t, "inproc=ws://"+addr+"/ws")
	r := runOne(t, e, "broadcast", "-receivers", "5", "-publishers", "2", "-rate", "40", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
	if r.Conns != 7 {
		t.Fatalf("conns %d", r.Conns)
	}
	if r.Expected != r.Sent*6 || r.Received != r.Expected {
		t.Fatalf("sent %d expected %d received %d", r.Sent, r.Expected, r.Received)
	}
}

func TestConnectAndIdle(t *testing.T) {
	addr := server(t, false)
	e := testEnv(t, fmt.Sprintf("inproc=ws://%s/ws#%d", addr, os.Getpid()))
	r := runOne(t, e, "connect", "-conns", "10", "-inflight", "4")
	if r.Upgrades != 10 || r.UpgradesPerSec <= 0 || len(r.Failures) != 0 || r.ConnectLatency.Count != 10 {
		t.Fatalf("connect: %+v", r)
	}
	r = runOne(t, e, "idle", "-counts", "0,4,8", "-settle", "10ms")
	if len(r.IdleSamples) != 3 || r.IdleSamples[2].Conns != 8 || r.BaselineRSS == 0 {
		t.Fatalf("idle: %+v", r.IdleSamples)
	}
}

// TestMarginalSlope: a one-time jump with the first connections (pools,
// buffers) is in the overall slope but not in the marginal one.
func TestMarginalSlope(t *testing.T) {
	xs := []float64{0, 2000, 5000, 10000}
	ys := make([]float64, len(xs))
	for i, x := range xs {
		ys[i] = 16e6 + 1000*x
		if x > 0 {
			ys[i] += 5e6 // the jump
		}
	}
	all, _ := report.LeastSquares(xs, ys)
	if m := marginalSlope(xs, ys); m < 999.9 || m > 1000.1 || all < 1200 {
		t.Fatalf("marginal %.1f (want 1000), overall %.1f (want > 1200)", m, all)
	}
	if m := marginalSlope([]float64{0, 10}, []float64{1, 2}); m != 0 {
		t.Fatalf("one non-zero sample: %.1f, want 0", m)
	}
}

func TestConnectFailuresByReason(t *testing.T) {
	// a server that refuses every upgrade with 403
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	e := testEnv(t, "deny=ws://"+ln.Addr().String()+"/ws")
	s := Lookup("connect")
	fs := flag.NewFlagSet("c", flag.ContinueOnError)
	run := s.Define(fs, "")
	_ = fs.Parse([]string{"-conns", "5"})
	r := e.RunScenario(s, run, nil)[0]
	if r.Status != "ok" || r.Upgrades != 0 || r.Failures["status 403"] != 5 {
		t.Fatalf("status %s upgrades %d failures %v", r.Status, r.Upgrades, r.Failures)
	}
}

func TestReconnectAgainstGorillaPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gorilla peer")
	}
	e := testEnv(t, "gorilla")
	r := runOne(t, e, "reconnect", "-conns", "12", "-wait", "20s")
	if r.Reconnected != 12 || r.ReconnectAllMs <= 0 || r.ServerDownMs <= 0 || r.DialAttempts < 12 {
		t.Fatalf("reconnect: %+v", r)
	}
	if r.Failures["dropped:closed"]+r.Failures["dropped:reset"] < 12 {
		t.Fatalf("expected every connection to be dropped by the kill: %v", r.Failures)
	}
}

func TestParseTarget(t *testing.T) {
	ts, err := ParseTarget("x=ws://127.0.0.1:1/ws#42")
	if err != nil || ts.URL != "ws://127.0.0.1:1/ws" || ts.Pid != 42 {
		t.Fatalf("%+v %v", ts, err)
	}
	ts, err = ParseTarget("y=/bin/srv -a {addr}")
	if err != nil || ts.Bin != "/bin/srv" || len(ts.Args) != 2 {
		t.Fatalf("%+v %v", ts, err)
	}
	if _, err := ParseTarget("nonsense"); err == nil {
		t.Fatal("want error")
	}
	if c, _ := parseCounts("0,2k,500"); len(c) != 3 || c[2] != 2000 {
		t.Fatalf("counts %v", c)
	}
	if s := split(10, 3); s[0]+s[1]+s[2] != 10 || s[0] != 4 {
		t.Fatalf("split %v", s)
	}
}

func TestReportLeavesOutPairBaselines(t *testing.T) {
	got := withoutPairBaselines([]string{"gateway", "uws", "gateway-raw", "gateway-1loop", "gateway-1loop-single", "x-raw"})
	want := []string{"gateway", "uws", "gateway-1loop", "x-raw"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
