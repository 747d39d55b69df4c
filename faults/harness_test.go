package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsgate/wsgate/auth"
)

// testSecret is the HS256 secret every gateway of the suite runs with.
const testSecret = "faults-test-secret"

// suiteSize is how big every scenario runs: reduced in make test, full in
// make faults.
type suiteSize int

const (
	sizeReduced suiteSize = iota
	sizeFull
)

func (s suiteSize) String() string {
	if s == sizeFull {
		return "full"
	}
	return "reduced"
}

// sizeOf reads FAULTS_SIZE: reduced (the default, also with -short) or full.
func sizeOf(t *testing.T) suiteSize {
	t.Helper()
	switch v := os.Getenv("FAULTS_SIZE"); v {
	case "", "reduced":
		return sizeReduced
	case "full":
		if testing.Short() {
			t.Log("FAULTS_SIZE=full with -short: running full size as asked")
		}
		return sizeFull
	default:
		t.Fatalf("FAULTS_SIZE=%q: want reduced or full", v)
	}
	return sizeReduced
}

// pick returns reduced or full by size.
func pick[T any](s suiteSize, reduced, full T) T {
	if s == sizeFull {
		return full
	}
	return reduced
}

// gatewayBuild is the gateway binary, built once per test process (a
// package variable because TestMain removes it after every test ran).
var gatewayBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gatewayBuild.dir != "" {
		_ = os.RemoveAll(gatewayBuild.dir)
	}
	os.Exit(code)
}

// gatewayBinary builds ./cmd/gateway without -race (the suite is about
// load; the race detector runs over the unit tests), or returns
// FAULTS_GATEWAY_BIN when set.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FAULTS_GATEWAY_BIN"); p != "" {
		return p
	}
	gatewayBuild.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			gatewayBuild.err = fmt.Errorf("no go command on $PATH: %w", err)
			return
		}
		if gatewayBuild.dir, err = os.MkdirTemp("", "wsgate-faults-"); err != nil {
			gatewayBuild.err = fmt.Errorf("temp dir for the gateway binary: %w", err)
			return
		}
		gatewayBuild.path = filepath.Join(gatewayBuild.dir, "gateway")
		cmd := exec.Command(goBin, "build", "-o", gatewayBuild.path, "github.com/wsgate/wsgate/cmd/gateway")
		if out, err := cmd.CombinedOutput(); err != nil {
			gatewayBuild.err = fmt.Errorf("go build ./cmd/gateway: %v\n%s", err, out)
		}
	})
	if gatewayBuild.err != nil {
		t.Fatal(gatewayBuild.err)
	}
	return gatewayBuild.path
}

// gateway is a gateway running as a child process.
type gateway struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	Addr  string // WebSocket address
	Admin string // admin HTTP address
	exit  chan struct{}
	code  int

	mu  sync.Mutex
	log bytes.Buffer
}

var (
	listenRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
	adminRE  = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
)

// gatewayArgs are the flags every gateway of the suite runs with, then
// extra (later flags win).
func gatewayArgs(natsURL string, extra ...string) []string {
	return append([]string{
		"-jwt-secret", testSecret,
		"-addr", "127.0.0.1:0",
		"-admin-addr", "127.0.0.1:0",
		"-nats-url", natsURL,
		"-loops", "2",
	}, extra...)
}

// startGateway runs the gateway binary (behind the command prefix wrap,
// such as prlimit, when not empty) and waits until both listeners are
// bound. The process is killed when the test ends; its log is printed when
// the test failed or FAULTS_LOG=1.
func startGateway(t *testing.T, name string, wrap []string, args ...string) *gateway {
	t.Helper()
	argv := append(append(append([]string{}, wrap...), gatewayBinary(t)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%s: stderr pipe: %v", name, err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %v: %v", name, argv, err)
	}
	g := &gateway{t: t, name: name, cmd: cmd, exit: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var gotAddr, gotAdmin, signalled bool
		for sc.Scan() {
			line := sc.Text()
			g.mu.Lock()
			g.log.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil && !gotAddr {
				g.Addr, gotAddr = m[1], true
			}
			if m := adminRE.FindStringSubmatch(line); m != nil && !gotAdmin {
				g.Admin, gotAdmin = m[1], true
			}
			g.mu.Unlock()
			if gotAddr && gotAdmin && !signalled {
				close(ready)
				signalled = true
			}
		}
		_ = cmd.Wait()
		g.code = cmd.ProcessState.ExitCode()
		close(g.exit)
	}()
	t.Cleanup(func() {
		if !g.exited() {
			_ = cmd.Process.Kill()
			<-g.exit
		}
		if t.Failed() || os.Getenv("FAULTS_LOG") != "" {
			t.Logf("gateway %s log:\n%s", name, g.Log())
		}
	})
	select {
	case <-ready:
	case <-g.exit:
		t.Fatalf("gateway %s exited with %d before listening:\n%s", name, g.code, g.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway %s did not start within 60s:\n%s", name, g.Log())
	}
	return g
}

// Log is everything the gateway wrote to stderr so far.
func (g *gateway) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

func (g *gateway) exited() bool {
	select {
	case <-g.exit:
		return true
	default:
		return false
	}
}

// requireRunning fails the test when the process has exited.
func (g *gateway) requireRunning() {
	g.t.Helper()
	if g.exited() {
		g.t.Fatalf("gateway %s exited with %d", g.name, g.code)
	}
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }

// adminGet fetches path from the admin port.
func (g *gateway) adminGet(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.Admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// ready reports whether /readyz answers 200.
func (g *gateway) ready() bool {
	code, _, err := g.adminGet("/readyz")
	return err == nil && code == http.StatusOK
}

// metrics scrapes /metrics and sums every sample by metric name (labels
// dropped).
func (g *gateway) metrics() (map[string]float64, error) {
	code, body, err := g.adminGet("/metrics")
	if err != nil {
		return nil, fmt.Errorf("gateway %s /metrics: %w", g.name, err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("gateway %s /metrics: status %d", g.name, code)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		sums[name] += v
	}
	return sums, nil
}

// procStatusKB reads one "Vm..." field of /proc/<pid>/status, in KiB.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// startNATS runs a NATS server in the test process on port (0: any free
// one), so the test can stop and restart it.
func startNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, MaxPayload: 1 << 20})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// natsPort is the client port of ns.
func natsPort(t *testing.T, ns *server.Server) int {
	t.Helper()
	addr, ok := ns.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("nats server address %v", ns.Addr())
	}
	return addr.Port
}

// token mints a client token for user that may publish to any channel.
func token(t *testing.T, user string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testSecret), auth.Claims{Sub: user, Pub: []string{"**"}}, time.Hour)
	if err != nil {
		t.Fatalf("mint token for %s: %v", user, err)
	}
	return tok
}

// frameMsg is a gateway message as the suite looks at it.
type frameMsg struct {
	Type    string          `json:"type"`
	Room    string          `json:"room"`
	From    string          `json:"from"`
	ID      string          `json:"id"`
	Code    string          `json:"code"`
	Reason  string          `json:"reason"`
	Dropped int             `json:"dropped"`
	Data    json.RawMessage `json:"data"`
}

// inbound is what a client's reader hands on: a message, or the error that
// ended the connection (then the channel closes).
type inbound struct {
	msg frameMsg
	err error
}

// client is a gorilla WebSocket client whose reader runs in the
// background, so a test can send and receive at once.
type client struct {
	t    *testing.T
	user string
	conn *websocket.Conn
	wmu  sync.Mutex
	in   chan inbound
}

// dialClient connects as user (token in the URL), starts the reader and
// waits for auth:ok. On a refused upgrade it returns the HTTP status.
func dialClient(t *testing.T, addr, user string, buffered int) (*client, int, error) {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := dialer.Dial("ws://"+addr+"/ws?token="+token(t, user), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, status, fmt.Errorf("dial %s as %s: %w (status %d)", addr, user, err, status)
	}
	cl := &client{t: t, user: user, conn: c, in: make(chan inbound, buffered)}
	go cl.readLoop()
	m, err := cl.next(10 * time.Second)
	if err != nil {
		_ = c.Close()
		return nil, 0, fmt.Errorf("%s: waiting for auth:ok: %w", user, err)
	}
	if m.Type != "auth:ok" {
		_ = c.Close()
		return nil, 0, fmt.Errorf("%s: first message %+v, want auth:ok", user, m)
	}
	return cl, 0, nil
}

// mustDial is dialClient that fails the test on any error; the connection
// is closed when the test ends.
func mustDial(t *testing.T, addr, user string) *client {
	t.Helper()
	cl, _, err := dialClient(t, addr, user, 1<<14)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.conn.Close() })
	return cl
}

func (cl *client) readLoop() {
	defer close(cl.in)
	for {
		_, b, err := cl.conn.ReadMessage()
		if err != nil {
			cl.in <- inbound{err: err}
			return
		}
		var m frameMsg
		if err := json.Unmarshal(b, &m); err != nil {
			cl.in <- inbound{err: fmt.Errorf("bad JSON %q: %w", b, err)}
			return
		}
		cl.in <- inbound{msg: m}
	}
}

// send writes v as one JSON text message.
func (cl *client) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_ = cl.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := cl.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("%s: write: %w", cl.user, err)
	}
	return nil
}

// errNothing is next's error when nothing arrived in time.
var errNothing = errors.New("nothing arrived in time")

// next returns the next message within d; the connection's end is an
// error (closeCode tells its WebSocket close code).
func (cl *client) next(d time.Duration) (frameMsg, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case in, ok := <-cl.in:
		if !ok {
			return frameMsg{}, fmt.Errorf("%s: connection already ended", cl.user)
		}
		return in.msg, in.err
	case <-timer.C:
		return frameMsg{}, fmt.Errorf("%s: %w (%v)", cl.user, errNothing, d)
	}
}

// join joins room and waits for joined, skipping anything else.
func (cl *client) join(room string) error {
	if err := cl.send(map[string]any{"type": "join", "room": room, "id": "j-" + room}); err != nil {
		return err
	}
	for {
		m, err := cl.next(10 * time.Second)
		if err != nil {
			return fmt.Errorf("%s: join %s: %w", cl.user, room, err)
		}
		switch m.Type {
		case "joined":
			return nil
		case "error":
			return fmt.Errorf("%s: join %s: %+v", cl.user, room, m)
		}
	}
}

// closeCode is the WebSocket close code in a read error (0 if none).
func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// waitUntil polls cond every 10 ms until it returns "" or d passes; then
// it fails the test with cond's last answer.
func waitUntil(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	if msg := pollUntil(d, cond); msg != "" {
		t.Fatalf("after %v: %s", d, msg)
	}
}

// pollUntil polls cond every 10 ms until it returns "" or d passes and
// returns cond's last answer ("" when it held): waitUntil without the
// failure, for a goroutine other than the test's or a caller that judges
// the outcome itself.
func pollUntil(d time.Duration, cond func() string) string {
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seqData is the data of a numbered test message, padded to about pad
// bytes.
type seqData struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad,omitempty"`
}

// seqOf reads the sequence number from a message's data.
func seqOf(m frameMsg) (int, error) {
	var d seqData
	if err := json.Unmarshal(m.Data, &d); err != nil {
		return 0, fmt.Errorf("data %q: %w", m.Data, err)
	}
	return d.Seq, nil
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
