package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
)

// testSecret is the HS256 secret every test gateway runs with.
const testSecret = "gateway-test-secret"

// gatewayBin is the gateway binary built once for the package's tests
// (with -race when the tests run with -race, so races in the real process
// fail its exit status).
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func gatewayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("no go command on $PATH: %w", err)
			return
		}
		if binDir, err = os.MkdirTemp("", "wsgate-gateway-test-"); err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(binDir, "gateway")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, ".")
		cmd := exec.Command(goBin, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// gwProc is a gateway running as a real process.
type gwProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	Addr  string // WebSocket listen address
	Admin string // admin listen address
	exit  chan struct{}
	code  int

	mu  sync.Mutex
	log bytes.Buffer
}

var (
	listenRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
	adminRE  = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
)

// startGateway runs the gateway binary with args and waits until both
// listeners are bound (their addresses parsed from the slog lines).
func startGateway(t *testing.T, args ...string) *gwProc {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0 exitcode=66")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gwProc{t: t, cmd: cmd, exit: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var gotAddr, gotAdmin, closed bool
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil && !gotAddr {
				p.Addr, gotAddr = m[1], true
			}
			if m := adminRE.FindStringSubmatch(line); m != nil && !gotAdmin {
				p.Admin, gotAdmin = m[1], true
			}
			p.mu.Unlock()
			if gotAddr && gotAdmin && !closed {
				close(ready)
				closed = true
			}
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
			t.Logf("gateway log:\n%s", p.Log())
		}
	})
	select {
	case <-ready:
	case <-p.exit:
		t.Fatalf("gateway exited with %d before listening:\n%s", p.code, p.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not start within 60s:\n%s", p.Log())
	}
	return p
}

// Log is everything the gateway wrote to stderr so far.
func (p *gwProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Signal sends sig to the process.
func (p *gwProc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits up to d for the process to exit and returns its exit code.
func (p *gwProc) Wait(d time.Duration) (int, bool) {
	select {
	case <-p.exit:
		return p.code, true
	case <-time.After(d):
		return 0, false
	}
}

// adminGet fetches path from the admin port.
func (p *gwProc) adminGet(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.Admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// token mints a test token for user.
func token(t *testing.T, user string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testSecret), auth.Claims{Sub: user}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// frameMsg is a gateway message as the tests look at it.
type frameMsg struct {
	Type    string          `json:"type"`
	Room    string          `json:"room"`
	From    string          `json:"from"`
	ID      string          `json:"id"`
	Code    string          `json:"code"`
	AfterMS *int64          `json:"after_ms"`
	Data    json.RawMessage `json:"data"`
}

// wsClient is a gorilla client of the gateway's JSON protocol.
type wsClient struct {
	t    *testing.T
	user string
	c    *websocket.Conn
}

// dialClient connects with ?token= and reads auth:ok.
func dialClient(t *testing.T, addr, user string) *wsClient {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+token(t, user), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s as %s: %v (status %d)", addr, user, err, status)
	}
	cl := &wsClient{t: t, user: user, c: c}
	t.Cleanup(func() { _ = c.Close() })
	if m := cl.read(); m.Type != "auth:ok" {
		t.Fatalf("%s: first message %+v, want auth:ok", user, m)
	}
	return cl
}

func (cl *wsClient) send(v any) {
	cl.t.Helper()
	if err := cl.c.WriteJSON(v); err != nil {
		cl.t.Fatalf("%s: write: %v", cl.user, err)
	}
}

// read reads one JSON message (5s deadline).
func (cl *wsClient) read() frameMsg {
	cl.t.Helper()
	m, err := cl.readErr(5 * time.Second)
	if err != nil {
		cl.t.Fatalf("%s: read: %v", cl.user, err)
	}
	return m
}

func (cl *wsClient) readErr(d time.Duration) (frameMsg, error) {
	_ = cl.c.SetReadDeadline(time.Now().Add(d))
	_, b, err := cl.c.ReadMessage()
	if err != nil {
		return frameMsg{}, err
	}
	var m frameMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return frameMsg{}, fmt.Errorf("bad JSON %q: %w", b, err)
	}
	return m, nil
}

// join joins room and waits for joined.
func (cl *wsClient) join(room string) {
	cl.t.Helper()
	cl.send(map[string]any{"type": "join", "room": room, "id": "j-" + room})
	for {
		m := cl.read()
		if m.Type == "joined" {
			return
		}
		if m.Type == "error" {
			cl.t.Fatalf("%s: join %s: %+v", cl.user, room, m)
		}
	}
}

// closeNormal sends a 1000 close and waits (briefly) for the gateway's answer.
func (cl *wsClient) closeNormal() {
	_ = cl.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
	_ = cl.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := cl.c.ReadMessage(); err != nil {
			break
		}
	}
	_ = cl.c.Close()
}

// closeCode extracts a WebSocket close code from a read error (0 if none).
func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// waitFor polls cond until it returns "" (ok) or d passes; then it fails
// with the last message.
func waitFor(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func baseArgs(extra ...string) []string {
	return append([]string{
		"-jwt-secret", testSecret,
		"-addr", "127.0.0.1:0",
		"-admin-addr", "127.0.0.1:0",
		"-nats-listen", "127.0.0.1:0",
		"-loops", "2",
	}, extra...)
}

// runBinary runs the gateway with args until it logs that it listens (in
// either log format), then stops it with SIGTERM; it returns its stderr and
// the exit error, if any. A process that exits by itself (bad flags) just
// returns.
func runBinary(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	var mu sync.Mutex
	var buf bytes.Buffer
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	deadline := time.After(timeout)
	for {
		select {
		case err := <-done:
			return output(), err
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
			return output(), fmt.Errorf("gateway did not finish within %v", timeout)
		case <-time.After(20 * time.Millisecond):
		}
		if strings.Contains(output(), "gateway listening") {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-done:
				return output(), err
			case <-deadline:
				_ = cmd.Process.Kill()
				<-done
				return output(), fmt.Errorf("gateway did not exit within %v of SIGTERM", timeout)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
