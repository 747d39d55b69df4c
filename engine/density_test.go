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
// WSGATE_DENSITY_HEAP=dir starts the gateway with -pprof and every
// allocation sampled (GODEBUG=memprofilerate=1), and writes its heap
// profile after each step to dir/heap-<mode>-<conns>.pprof; compare two
// steps with
//
//	go tool pprof -top -sample_index=inuse_space -diff_base dir/heap-room-0.pprof dir/heap-room-10000.pprof

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
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

// densitySample is the gateway's memory at one connection count, and the
// external NATS server's (BenchmarkIdleDensityRoomExternalNATS).
type densitySample struct {
	conns     int
	rss, anon int64 // bytes
	natsRSS   int64
}

func BenchmarkIdleDensity(b *testing.B) { benchDensity(b, densityEcho) }

// BenchmarkIdleDensityRoom is the same measurement in router mode: every
// connection authenticates as its own user (a distinct HS256 token in the
// query) and joins one room, so it counts the router's client state, the
// user and room tables, and the user's NATS subscription on the embedded
// server, which lives in the same process.
func BenchmarkIdleDensityRoom(b *testing.B) { benchDensity(b, densityRoom) }

// BenchmarkIdleDensityRoomExternalNATS is BenchmarkIdleDensityRoom with the
// NATS server in its own process (nats-server built from the module
// cache), as in a deployment with -nats-url: B/conn is then the gateway
// alone (nats.go's side of each user subscription included) and
// natsB/conn the server's side (its client subscription and sublist
// entry), so the two parts of a user's subscription are measured apart.
func BenchmarkIdleDensityRoomExternalNATS(b *testing.B) { benchDensity(b, densityRoomExternal) }

// BenchmarkIdleDensityRoomSharedUsers is BenchmarkIdleDensityRoom with
// -nats-user-interest shared: one gw.user.* subscription instead of one
// per user, so it shows what the per-user subscriptions cost.
func BenchmarkIdleDensityRoomSharedUsers(b *testing.B) { benchDensity(b, densityRoomShared) }

type densityMode int

func (m densityMode) String() string {
	switch m {
	case densityRoom:
		return "room"
	case densityRoomExternal:
		return "room-external"
	case densityRoomShared:
		return "room-shared"
	}
	return "echo"
}

const (
	densityEcho densityMode = iota
	densityRoom
	densityRoomExternal
	densityRoomShared
	numDensityModes
)

func benchDensity(b *testing.B, mode densityMode) {
	if testing.Short() {
		b.Skip("opens up to 19k connections")
	}
	// One measurement per mode, however often the framework calls us.
	d := &densityRuns[mode]
	d.once.Do(func() { d.fit, d.err = measureIdleDensity(b, mode) })
	if d.err != nil {
		b.Fatal(d.err)
	}
	b.ReportMetric(d.fit.slope, "B/conn")
	b.ReportMetric(d.fit.anonSlope, "anonB/conn")
	if d.fit.slopeHigh > 0 {
		b.ReportMetric(d.fit.slopeHigh, "B/conn-2k-max")
	}
	if mode == densityRoomExternal {
		b.ReportMetric(d.fit.natsSlope, "natsB/conn")
	}
}

var densityRuns [numDensityModes]struct {
	once sync.Once
	fit  densityFit
	err  error
}

type densityFit struct {
	slope, anonSlope, slopeHigh float64
	natsSlope                   float64 // external NATS server's RSS per connection
}

func measureIdleDensity(b *testing.B, mode densityMode) (densityFit, error) {
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

	gw, err := startGatewayProcess(b, mode)
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
		more, err := densityDial(gw.addr, len(conns), target, mode)
		conns = append(conns, more...)
		if err != nil {
			return fit, fmt.Errorf("dialing to %d: %w", target, err)
		}
		s, err := gw.settle(target)
		if err != nil {
			return fit, err
		}
		samples = append(samples, s)
		if dir := os.Getenv("WSGATE_DENSITY_HEAP"); dir != "" {
			if err := gw.writeHeap(filepath.Join(dir, fmt.Sprintf("heap-%s-%d.pprof", mode, target))); err != nil {
				return fit, err
			}
		}
		if gw.nats != nil {
			b.Logf("conns=%6d  VmRSS=%8.2f MiB  Anonymous=%8.2f MiB  nats-server VmRSS=%8.2f MiB", s.conns, mib(s.rss), mib(s.anon), mib(s.natsRSS))
		} else {
			b.Logf("conns=%6d  VmRSS=%8.2f MiB  Anonymous=%8.2f MiB", s.conns, mib(s.rss), mib(s.anon))
		}
	}
	var lo []densitySample
	for _, s := range samples {
		if s.conns >= 2000 && s.conns <= 10000 {
			lo = append(lo, s)
		}
	}
	fit.slope = leastSquares(lo, func(s densitySample) int64 { return s.rss })
	fit.anonSlope = leastSquares(lo, func(s densitySample) int64 { return s.anon })
	fit.natsSlope = leastSquares(lo, func(s densitySample) int64 { return s.natsRSS })
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
	if gw.nats != nil {
		b.Logf("external nats-server: %.0f B/conn RSS over 2k..10k", fit.natsSlope)
	}
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
func densityDial(addr string, from, to int, mode densityMode) ([]*net.TCPConn, error) {
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
				var c *net.TCPConn
				var err error
				if mode != densityEcho {
					c, err = densityDialRoom(addr, local, n)
				} else {
					c, err = perfDialRaw(addr, local)
				}
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

// gatewayProcess is a gateway binary running in echo or router mode.
type gatewayProcess struct {
	cmd   *exec.Cmd
	addr  string
	admin string // admin address, with -pprof (WSGATE_DENSITY_HEAP)
	done  chan struct{}
	nats  *loggedProcess // the external NATS server, or nil
}

// writeHeap saves the gateway's heap profile, after a GC, to path.
func (gw *gatewayProcess) writeHeap(path string) error {
	if gw.admin == "" {
		return fmt.Errorf("heap profile: the gateway has no admin address")
	}
	resp, err := http.Get("http://" + gw.admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// goBuild builds pkg into dir/name and returns the binary's path.
func goBuild(dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// loggedProcess is a child process whose stderr is scanned for the
// addresses it logs.
type loggedProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when stderr ends
}

// startLogged starts bin and waits until, for each marker, a stderr line
// containing it was seen; it returns the text after the line's last
// occurrence of each marker's addrPrefix (up to the next space).
func startLogged(bin string, args, env []string, markers [][2]string) (*loggedProcess, []string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	p := &loggedProcess{cmd: cmd, done: make(chan struct{})}
	type found struct {
		i    int
		addr string
	}
	foundCh := make(chan found, len(markers))
	go func() {
		seen := make([]bool, len(markers))
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			for i, m := range markers {
				if seen[i] || !strings.Contains(line, m[0]) {
					continue
				}
				if k := strings.LastIndex(line, m[1]); k >= 0 {
					a, _, _ := strings.Cut(line[k+len(m[1]):], " ")
					seen[i] = true
					foundCh <- found{i, a}
				}
			}
		}
		close(p.done)
	}()
	addrs := make([]string, len(markers))
	deadline := time.After(10 * time.Second)
	for n := 0; n < len(markers); n++ {
		select {
		case f := <-foundCh:
			addrs[f.i] = f.addr
		case <-p.done:
			_ = cmd.Wait()
			return nil, nil, fmt.Errorf("%s exited before listening: %v", filepath.Base(bin), cmd.ProcessState)
		case <-deadline:
			p.stop()
			return nil, nil, fmt.Errorf("%s did not log its addresses", filepath.Base(bin))
		}
	}
	return p, addrs, nil
}

func (p *loggedProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
	}
	_ = p.cmd.Wait()
}

// startGatewayProcess builds ./cmd/gateway and starts it on 127.0.0.1:0
// (and, for densityRoomExternal, a nats-server on 127.0.0.1 first).
func startGatewayProcess(b *testing.B, mode densityMode) (*gatewayProcess, error) {
	dir := b.TempDir()
	bin, err := goBuild(dir, "gateway", "github.com/wsgate/wsgate/cmd/gateway")
	if err != nil {
		return nil, err
	}
	heap := os.Getenv("WSGATE_DENSITY_HEAP") != ""
	admin := ""
	if heap {
		admin = "127.0.0.1:0"
	}
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", admin, "-ping-interval", "0", "-idle-timeout", "0"}
	if heap {
		args = append(args, "-pprof")
	}
	var env []string
	if heap {
		env = append(env, "GODEBUG=memprofilerate=1")
	}
	if extra := os.Getenv("WSGATE_DENSITY_ENV"); extra != "" {
		env = append(env, strings.Fields(extra)...)
	}
	var nats *loggedProcess
	switch mode {
	case densityRoom:
		args = append(args, "-jwt-secret", densitySecret, "-nats-listen", "-")
	case densityRoomShared:
		args = append(args, "-jwt-secret", densitySecret, "-nats-listen", "-", "-nats-user-interest", "shared")
	case densityRoomExternal:
		natsBin, err := goBuild(dir, "nats-server", "github.com/nats-io/nats-server/v2")
		if err != nil {
			return nil, err
		}
		var addrs []string
		nats, addrs, err = startLogged(natsBin, []string{"-a", "127.0.0.1", "-p", "-1"}, env,
			[][2]string{{"Listening for client connections", "on "}})
		if err != nil {
			return nil, err
		}
		args = append(args, "-jwt-secret", densitySecret, "-nats-url", "nats://"+addrs[0])
	default:
		args = append(args, "-echo")
	}
	markers := [][2]string{{"gateway listening", "addr="}}
	if heap {
		markers = append(markers, [2]string{"admin listening", "addr="})
	}
	p, addrs, err := startLogged(bin, args, env, markers)
	if err != nil {
		if nats != nil {
			nats.stop()
		}
		return nil, err
	}
	gw := &gatewayProcess{cmd: p.cmd, done: p.done, addr: addrs[0], nats: nats}
	if heap {
		gw.admin = addrs[1]
	}
	return gw, nil
}

func (gw *gatewayProcess) stop() {
	(&loggedProcess{cmd: gw.cmd, done: gw.done}).stop()
	if gw.nats != nil {
		gw.nats.stop()
	}
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
		if gw.nats != nil {
			nrss, _, err := procMemory(gw.nats.cmd.Process.Pid)
			if err != nil {
				return best, err
			}
			if best.natsRSS == 0 || nrss < best.natsRSS {
				best.natsRSS = nrss
			}
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

const densitySecret = "density-secret"

// densityToken is an HS256 token for user u<n>, built by hand: engine tests
// cannot import the router (it imports the engine).
func densityToken(n int) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"u%d","exp":%d}`, n, time.Now().Add(24*time.Hour).Unix())))
	mac := hmac.New(sha256.New, []byte(densitySecret))
	mac.Write([]byte(head + "." + body))
	return head + "." + body + "." + enc.EncodeToString(mac.Sum(nil))
}

// densityDialRoom upgrades with the user's token, joins room "lobby" and
// waits for "joined", leaving an idle authenticated member.
func densityDialRoom(addr string, local *net.TCPAddr, n int) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := nc.(*net.TCPConn)
	req := strings.Replace(perfUpgradeRequest, "GET /ws ", "GET /ws?token="+densityToken(n)+" ", 1)
	join := clientFrame(true, 0, 0x1, true, []byte(`{"type":"join","room":"lobby"}`))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Write(join); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(`"joined"`)) {
		m, err := c.Read(buf)
		got = append(got, buf[:m]...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("waiting for joined: %w (got %q)", err, got)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}
