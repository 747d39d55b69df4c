package engine

// Memory per idle upgraded connection, measured on the real gateway binary
// in its own process (so its RSS is not mixed with the clients'):
//
//	go test ./engine -run '^$' -bench IdleDensity -benchtime 1x -v
//
// The gateway runs "-echo -ping-interval 0 -idle-timeout 0", so nothing
// happens while the connections are idle. This process raises its open-file
// limit to the hard limit and holds the client ends as bare *net.TCPConn
// (no goroutine, no buffer per connection), spread over source addresses
// 127.0.0.2, 127.0.0.3, ... (5000 per address). After each step the
// gateway's VmRSS (/proc/<pid>/status) and the Anonymous part of
// /proc/<pid>/smaps_rollup are sampled a few times and the minimum is kept.
// The headline is the least-squares slope of RSS over 2k..10k connections;
// the kernel's own socket memory is not in the process's RSS and not in the
// figure.
//
// WSGATE_DENSITY_MAX (default 19000, capped by the open-file limit) sets the
// largest step; WSGATE_DENSITY_ENV adds environment variables for the
// gateway (for example "GOGC=50"), to compare GC settings.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// densitySample is the gateway's memory at one connection count.
type densitySample struct {
	conns     int
	rss, anon int64 // bytes
}

func BenchmarkIdleDensity(b *testing.B) {
	if testing.Short() {
		b.Skip("opens up to 19k connections")
	}
	// One measurement, however often the framework calls us.
	densityOnce.Do(func() { densityResult, densityErr = measureIdleDensity(b) })
	if densityErr != nil {
		b.Fatal(densityErr)
	}
	b.ReportMetric(densityResult.slope, "B/conn")
	b.ReportMetric(densityResult.anonSlope, "anonB/conn")
	if densityResult.slopeHigh > 0 {
		b.ReportMetric(densityResult.slopeHigh, "B/conn-2k-max")
	}
}

var (
	densityOnce   sync.Once
	densityResult densityFit
	densityErr    error
)

type densityFit struct {
	slope, anonSlope, slopeHigh float64
}

func measureIdleDensity(b *testing.B) (densityFit, error) {
	var fit densityFit
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fit, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fit, fmt.Errorf("raise open-file limit: %w", err)
	}
	maxConns := 19000
	if v := os.Getenv("WSGATE_DENSITY_MAX"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10000 {
			return fit, fmt.Errorf("WSGATE_DENSITY_MAX=%q: want a number >= 10000", v)
		}
		maxConns = n
	}
	if room := int(lim.Cur) - 200; maxConns > room {
		maxConns = room
	}
	if maxConns < 10000 {
		return fit, fmt.Errorf("open-file limit %d is too low for 10k connections", lim.Cur)
	}

	gw, err := startGatewayProcess(b)
	if err != nil {
		return fit, err
	}
	defer gw.stop()

	steps := []int{0, 2000, 5000, 10000}
	for _, s := range []int{15000, maxConns} {
		if s > steps[len(steps)-1] && s <= maxConns {
			steps = append(steps, s)
		}
	}
	var conns []*net.TCPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var samples []densitySample
	for _, target := range steps {
		more, err := densityDial(gw.addr, len(conns), target)
		conns = append(conns, more...)
		if err != nil {
			return fit, fmt.Errorf("dialing to %d: %w", target, err)
		}
		s, err := gw.settle(target)
		if err != nil {
			return fit, err
		}
		samples = append(samples, s)
		b.Logf("conns=%6d  VmRSS=%8.2f MiB  Anonymous=%8.2f MiB", s.conns, mib(s.rss), mib(s.anon))
	}
	var lo []densitySample
	for _, s := range samples {
		if s.conns >= 2000 && s.conns <= 10000 {
			lo = append(lo, s)
		}
	}
	fit.slope = leastSquares(lo, func(s densitySample) int64 { return s.rss })
	fit.anonSlope = leastSquares(lo, func(s densitySample) int64 { return s.anon })
	var hi []densitySample
	for _, s := range samples {
		if s.conns >= 2000 {
			hi = append(hi, s)
		}
	}
	if len(hi) > len(lo) {
		fit.slopeHigh = leastSquares(hi, func(s densitySample) int64 { return s.rss })
	}
	b.Logf("idle density: %.0f B/conn RSS (%.0f B/conn anonymous) least-squares over 2k..10k; %.0f B/conn over 2k..%d",
		fit.slope, fit.anonSlope, fit.slopeHigh, steps[len(steps)-1])
	return fit, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// leastSquares is the slope of y over conns, in bytes per connection.
func leastSquares(ss []densitySample, y func(densitySample) int64) float64 {
	if len(ss) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, v := float64(s.conns), float64(y(s))
		sx += x
		sy += v
		sxx += x * x
		sxy += x * v
	}
	n := float64(len(ss))
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// densityDial opens connections number from..to-1 (source address by number,
// 5000 per address).
func densityDial(addr string, from, to int) ([]*net.TCPConn, error) {
	if to <= from {
		return nil, nil
	}
	out := make([]*net.TCPConn, to-from)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(out) {
					return
				}
				n := from + i
				local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n/5000))}
				c, err := perfDialRaw(addr, local)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("conn %d: %w", n, err) })
					return
				}
				out[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range out {
			if c != nil {
				c.Close()
			}
		}
		return nil, firstErr
	}
	return out, nil
}

// gatewayProcess is a gateway binary running in echo mode.
type gatewayProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startGatewayProcess builds ./cmd/gateway and starts it on 127.0.0.1:0.
func startGatewayProcess(b *testing.B) (*gatewayProcess, error) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "gateway")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	build := exec.Command(goBin, "build", "-o", bin, "github.com/wsgate/wsgate/cmd/gateway")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/gateway: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-echo", "-addr", "127.0.0.1:0", "-admin-addr", "",
		"-ping-interval", "0", "-idle-timeout", "0")
	cmd.Env = os.Environ()
	if extra := os.Getenv("WSGATE_DENSITY_ENV"); extra != "" {
		cmd.Env = append(cmd.Env, strings.Fields(extra)...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	gw := &gatewayProcess{cmd: cmd, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "gateway listening") {
				for _, f := range strings.Fields(line) {
					if a, ok := strings.CutPrefix(f, "addr="); ok {
						select {
						case addrCh <- a:
						default:
						}
					}
				}
			}
		}
		close(gw.done)
	}()
	select {
	case gw.addr = <-addrCh:
		return gw, nil
	case <-gw.done:
		_ = cmd.Wait()
		return nil, fmt.Errorf("gateway exited before listening: %v", cmd.ProcessState)
	case <-time.After(10 * time.Second):
		gw.stop()
		return nil, fmt.Errorf("gateway did not log its address")
	}
}

func (gw *gatewayProcess) stop() {
	_ = gw.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-gw.done:
	case <-time.After(5 * time.Second):
		_ = gw.cmd.Process.Kill()
	}
	_ = gw.cmd.Wait()
}

// settle waits ~1s after a step and returns the minimum of a few samples.
func (gw *gatewayProcess) settle(conns int) (densitySample, error) {
	time.Sleep(time.Second)
	best := densitySample{conns: conns}
	for i := 0; i < 5; i++ {
		rss, anon, err := procMemory(gw.cmd.Process.Pid)
		if err != nil {
			return best, err
		}
		if best.rss == 0 || rss < best.rss {
			best.rss = rss
		}
		if best.anon == 0 || anon < best.anon {
			best.anon = anon
		}
		time.Sleep(200 * time.Millisecond)
	}
	return best, nil
}

// procMemory reads VmRSS from /proc/pid/status and Anonymous from
// /proc/pid/smaps_rollup, in bytes.
func procMemory(pid int) (rss, anon int64, err error) {
	rss, err = procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	anon, err = procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Anonymous:")
	return rss, anon, err
}

func procField(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest) // "1234 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s %s: %w", path, key, err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
