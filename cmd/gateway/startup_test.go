package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/router/natsbp"
)

// startupLimit bounds the wait for a startup failure (3x this, generous for
// a -race binary on a loaded machine); the tests judge by the cause named.
const startupLimit = 10 * time.Second

// launched is a gateway process whose startup the test watches line by line
// (startGateway in helpers_test.go waits for both listeners instead).
type launched struct {
	t     *testing.T
	cmd   *exec.Cmd
	exit  chan struct{}
	code  int
	start time.Time

	mu  sync.Mutex
	log bytes.Buffer
}

// launch starts the gateway binary with args and returns at once.
func launch(t *testing.T, args ...string) *launched {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0 exitcode=66")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	p := &launched{t: t, cmd: cmd, exit: make(chan struct{}), start: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.exit)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exit:
		default:
			_ = cmd.Process.Kill()
			<-p.exit
		}
		if t.Failed() || os.Getenv("GW_TEST_LOG") != "" {
			t.Logf("gateway %v log:\n%s", args, p.Log())
		}
	})
	return p
}

func (p *launched) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// exited waits up to d for the process to end and returns its exit code
// and how long after the launch it ended; it fails the test otherwise.
func (p *launched) exited(d time.Duration) (int, time.Duration) {
	p.t.Helper()
	select {
	case <-p.exit:
		return p.code, time.Since(p.start)
	case <-time.After(d):
		p.t.Fatalf("gateway still running %v after its launch:\n%s", d, p.Log())
		return 0, 0
	}
}

// waitLog waits until the log contains s (polling with a deadline) or the
// process exits without it.
func (p *launched) waitLog(s string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.Log(), s) {
		select {
		case <-p.exit:
			p.t.Fatalf("gateway exited with %d before logging %q:\n%s", p.code, s, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q in the log after %v:\n%s", s, d, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr is a loopback address nothing listens on (closed again).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// expectStartupFailure launches the gateway, expects it to exit with code
// within startupLimit, its stderr containing every one of want, and no
// embedded NATS started (the checks come first).
func expectStartupFailure(t *testing.T, code int, args []string, want ...string) {
	t.Helper()
	p := launch(t, args...)
	got, took := p.exited(3 * startupLimit)
	log := p.Log()
	if got != code {
		t.Errorf("%v: exit %d, want %d:\n%s", args, got, code, log)
	}
	// The old code failed after a 10 s readiness timeout without the
	// cause; the cause in stderr is what proves it no longer waits (how
	// fast depends on the machine, so it is only logged).
	t.Logf("%v: failed after %v", args, took)
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("%v: stderr lacks %q:\n%s", args, w, log)
		}
	}
	if strings.Contains(log, "embedded NATS running") {
		t.Errorf("%v: the embedded NATS server started before the failure:\n%s", args, log)
	}
}

// A port held by another NATS server (client or route port) is reported
// with the cause at once; the old code said "embedded server did not become
// ready" after 10s.
func TestStartupPortTaken(t *testing.T) {
	other, err := natsbp.StartEmbedded(natsbp.EmbeddedOptions{Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Shutdown()
	client, route := other.Addr().String(), other.ClusterAddr().String()
	expectStartupFailure(t, 1, baseArgs("-nats-listen", client),
		"nats-listen "+client+": address already in use")
	expectStartupFailure(t, 1, baseArgs("-nats-cluster", route),
		"nats-cluster "+route+": address already in use")
	// The gateway's own ports are checked before NATS starts as well.
	expectStartupFailure(t, 1, baseArgs("-admin-addr", client), "admin-addr "+client+": address already in use")
	expectStartupFailure(t, 1, baseArgs("-addr", client), "addr "+client+": address already in use")
}

// A -data-dir that cannot be a directory fails at once with the cause; the
// old code ran into the 10s readiness timeout (JetStream never started).
func TestStartupBadDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	expectStartupFailure(t, 1, baseArgs("-history", "-data-dir", filepath.Join(file, "data")),
		"data-dir "+filepath.Join(file, "data")+": mkdir "+file+": not a directory")
	expectStartupFailure(t, 1, baseArgs("-history", "-data-dir", file), "data-dir "+file)
	// A missing directory is created.
	dir := filepath.Join(t.TempDir(), "new", "data")
	out, err := runBinary(t, 60*time.Second, baseArgs("-history", "-data-dir", dir)...)
	if err != nil {
		t.Fatalf("with a new -data-dir: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil || !fi.IsDir() {
		t.Fatalf("JetStream store not under the new -data-dir: %v", err)
	}
}

// Malformed addresses are refused as bad flags (exit 2) before anything
// starts; the old code checked -addr only after NATS was running, and
// -admin-addr only after the WebSocket port was open.
func TestStartupBadAddr(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", "nonsense"}, `addr "nonsense"`},
		{[]string{"-addr", "127.0.0.1:99999"}, `addr "127.0.0.1:99999": bad port`},
		{[]string{"-admin-addr", "nonsense"}, `admin-addr "nonsense"`},
		{[]string{"-nats-listen", "localhost"}, `nats-listen "localhost"`},
		{[]string{"-nats-cluster", "127.0.0.1:x"}, `nats-cluster "127.0.0.1:x"`},
		{[]string{"-nats-cluster", "127.0.0.1:0", "-nats-routes", "gw2:6222"}, `nats-routes: "gw2:6222": want nats-route://host:port`},
		{[]string{"-nats-routes", "nats-route://gw2:6222"}, "-nats-routes needs -nats-cluster"},
		{[]string{"-nats-url", "nats://n1:4222,http://n2"}, `nats-url "http://n2": scheme "http"`},
	} {
		expectStartupFailure(t, 2, baseArgs(c.args...), c.want)
	}
}

// -nats-listen - with a cluster cannot work with nats-server v2.15 (the
// route port opens after the client port): it is refused as a bad flag.
// The old code hung forever and ignored SIGTERM.
func TestStartupNoClientPortCluster(t *testing.T) {
	expectStartupFailure(t, 2, baseArgs("-nats-listen", "-", "-nats-cluster", "127.0.0.1:0"),
		"-nats-listen - (no client port) cannot be combined with -nats-cluster")
}

// SIGTERM while startup waits for NATS (here a -history cluster node whose
// peer is not up: no JetStream meta leader) ends the process promptly with
// a clear message. The old code did not wait for the meta leader and did
// not watch signals while starting.
func TestStartupSIGTERMWhileWaiting(t *testing.T) {
	p := launch(t, baseArgs("-history", "-data-dir", t.TempDir(), "-instance-id", "lonely",
		"-nats-cluster", "127.0.0.1:0", "-nats-routes", "nats-route://"+freeAddr(t))...)
	p.waitLog("waiting for the JetStream meta leader", 30*time.Second)
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exit:
	case <-time.After(startupLimit):
		t.Fatalf("still running %v after SIGTERM:\n%s", startupLimit, p.Log())
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent))
	if p.code != 0 {
		t.Errorf("exit %d, want 0 (a requested stop)", p.code)
	}
	if log := p.Log(); !strings.Contains(log, "startup interrupted") || !strings.Contains(log, "terminated during startup") ||
		!strings.Contains(log, "meta leader") {
		t.Errorf("log does not say startup was interrupted while waiting for the meta leader:\n%s", log)
	}
}

// -history on an embedded three-node cluster: the gateways start together
// (each waits for the JetStream meta leader), and a room message published
// on one is resumable on the two others, with the stream on one server
// (-history-replicas 1, the default) and on all three.
func TestEmbeddedClusterHistory(t *testing.T) {
	for _, replicas := range []string{"1", "3"} {
		t.Run("replicas"+replicas, func(t *testing.T) { embeddedClusterHistory(t, replicas) })
	}
}

func embeddedClusterHistory(t *testing.T, replicas string) {
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats-route://"+r)
	}
	procs := make([]*launched, 3)
	for i := range procs {
		procs[i] = launch(t, baseArgs("-history", "-history-replicas", replicas, "-data-dir", t.TempDir(), "-instance-id", fmt.Sprintf("g%d", i+1),
			"-nats-cluster", routes[i], "-nats-routes", strings.Join(urls, ","))...)
	}
	addrs := make([]string, 3)
	for i, p := range procs {
		p.waitLog("gateway listening", 60*time.Second)
		addrs[i] = listenRE.FindStringSubmatch(p.Log())[1]
	}
	alice := dialClient(t, addrs[0], "alice")
	alice.join("lobby")
	if m := publishAcked(t, alice, "kept", 1); m.Type != "ack" {
		t.Fatalf("publish on g1: %+v", m)
	}
	for i, addr := range addrs[1:] {
		if got := resumeAll(t, addr, fmt.Sprintf("reader%d", i+2)); len(got) != 1 || got[0] != `"kept"` {
			t.Fatalf("g%d resume since 0: %v, want the message published on g1", i+2, got)
		}
	}
	if replicas != "3" {
		return
	}
	// Three copies: with one node gone (SIGKILL, its NATS node with it) the
	// others still store and replay. A client retries `unavailable` while
	// JetStream elects a new stream leader (bounded: 20 tries of at most 5s).
	_ = procs[2].cmd.Process.Kill()
	procs[2].exited(10 * time.Second)
	if m := publishAcked(t, alice, "after-loss", 20); m.Type != "ack" {
		t.Fatalf("publish on g1 with g3 gone: %+v", m)
	}
	// A try answered `unavailable` may have been stored all the same (the
	// answer means "not known to be stored"): repeats of the second message
	// are allowed, nothing else.
	got := resumeAll(t, addrs[1], "reader-late")
	ok := len(got) >= 2 && got[0] == `"kept"`
	for _, d := range got[1:] {
		ok = ok && d == `"after-loss"`
	}
	if !ok {
		t.Fatalf("g2 resume since 0 with g3 gone: %v, want both messages", got)
	}
}

// publishAcked sends a room message to lobby, retrying on `error
// unavailable` up to tries times, and returns the last answer.
func publishAcked(t *testing.T, cl *wsClient, data string, tries int) frameMsg {
	t.Helper()
	var m frameMsg
	for try := range tries {
		id := fmt.Sprintf("%s-%d", data, try)
		cl.send(map[string]any{"type": "message", "room": "lobby", "data": data, "id": id})
		for {
			m = cl.read()
			if m.ID == id && (m.Type == "ack" || m.Type == "error") {
				break
			}
		}
		if m.Type == "ack" || m.Code != "unavailable" {
			return m
		}
	}
	return m
}

// resumeAll connects to addr as user, joins lobby, resumes it from the
// start and returns the data of the replayed messages.
func resumeAll(t *testing.T, addr, user string) []string {
	t.Helper()
	cl := dialClient(t, addr, user)
	cl.join("lobby")
	cl.send(map[string]any{"type": "resume", "room": "lobby", "since": 0, "id": "r"})
	var got []string
	for {
		m := cl.read()
		switch m.Type {
		case "message":
			got = append(got, string(m.Data))
		case "error":
			t.Fatalf("%s resume: %+v", user, m)
		case "resumed":
			return got
		}
	}
}
