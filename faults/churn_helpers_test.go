package faults

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/wsgate/wsgate/auth"
)

// churnSecret is the HS256 secret the churn gateways verify tokens with.
const churnSecret = "faults-churn-secret"

// churnBinary builds the gateway once per package run (the build is most of
// a reduced run's cost). The binary lives in a temporary directory named
// after this process; without a TestMain of our own to remove it, each
// build removes the directories of earlier runs whose process is gone.
var churnBinary struct {
	once sync.Once
	path string
	err  error
}

// churnGatewayBinary returns the path of the gateway binary, building it on
// first use.
func churnGatewayBinary(t *testing.T) string {
	t.Helper()
	churnBinary.once.Do(func() {
		churnRemoveStaleBinaries()
		dir := filepath.Join(os.TempDir(), "wsgate-churn-bin-"+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			churnBinary.err = fmt.Errorf("binary dir: %w", err)
			return
		}
		path := filepath.Join(dir, "gateway")
		cmd := exec.Command("go", "build", "-o", path, "github.com/wsgate/wsgate/cmd/gateway")
		if out, err := cmd.CombinedOutput(); err != nil {
			churnBinary.err = fmt.Errorf("go build ./cmd/gateway: %v\n%s", err, out)
			return
		}
		churnBinary.path = path
	})
	if churnBinary.err != nil {
		t.Fatal(churnBinary.err)
	}
	return churnBinary.path
}

// churnRemoveStaleBinaries removes binary directories left by earlier test
// processes that have exited.
func churnRemoveStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "wsgate-churn-bin-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "wsgate-churn-bin-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		_ = os.RemoveAll(d)
	}
}

// churnStartNATS runs a NATS server in this process on a loopback port and
// returns its client URL; it stops with the test.
func churnStartNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

// churnGateway is a gateway running as a real process.
type churnGateway struct {
	name  string
	cmd   *exec.Cmd
	addr  string // WebSocket listen address
	admin string // admin listen address
	exit  chan struct{}

	mu  sync.Mutex
	log bytes.Buffer
}

var (
	churnListenRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
	churnAdminRE  = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
)

// churnStartGateway runs the gateway binary on natsURL with loops event
// loops and waits until both listeners are bound and /readyz says ready.
func churnStartGateway(t *testing.T, name, natsURL string, loops int) *churnGateway {
	t.Helper()
	cmd := exec.Command(churnGatewayBinary(t),
		"-jwt-secret", churnSecret,
		"-addr", "127.0.0.1:0",
		"-admin-addr", "127.0.0.1:0",
		"-nats-url", natsURL,
		"-instance-id", name,
		"-loops", strconv.Itoa(loops),
		"-rate-msgs", "0", "-rate-bytes", "0",
		"-drain-time", "0s",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gateway %s: %v", name, err)
	}
	g := &churnGateway{name: name, cmd: cmd, exit: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			g.mu.Lock()
			g.log.WriteString(line + "\n")
			if m := churnListenRE.FindStringSubmatch(line); m != nil && g.addr == "" {
				g.addr = m[1]
			}
			if m := churnAdminRE.FindStringSubmatch(line); m != nil && g.admin == "" {
				g.admin = m[1]
			}
			ready := g.addr != "" && g.admin != ""
			g.mu.Unlock()
			if ready && !signalled {
				close(listening)
				signalled = true
			}
		}
		_ = cmd.Wait()
		close(g.exit)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exit:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-g.exit:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-g.exit
			}
		}
		if t.Failed() || os.Getenv("CHURN_GATEWAY_LOG") != "" {
			t.Logf("gateway %s log:\n%s", name, g.logText())
		}
	})
	select {
	case <-listening:
	case <-g.exit:
		t.Fatalf("gateway %s exited before listening:\n%s", name, g.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway %s did not listen within 60s:\n%s", name, g.logText())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, err := g.adminGet("/readyz")
		if err == nil && status == http.StatusOK {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s not ready within 20s (status %d, %v)", name, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *churnGateway) logText() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// adminGet fetches path from the admin port.
func (g *churnGateway) adminGet(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// churnLossCounters sums the gateway's metrics that count messages it
// dropped or told as gaps: a loss with all of them at zero is silent.
func (g *churnGateway) churnLossCounters() (map[string]float64, error) {
	status, body, err := g.adminGet("/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", g.name, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: status %d", g.name, status)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, name := range []string{"wsgate_dropped_total", "wsgate_backplane_dropped_total", "wsgate_gaps_sent_total", "wsgate_backplane_publish_errors_total"} {
			if !strings.HasPrefix(line, name) {
				continue
			}
			rest := line[len(name):]
			if rest != "" && rest[0] != ' ' && rest[0] != '{' {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sums[name] += v
			}
		}
	}
	return sums, nil
}

// churnToken mints a token for user.
func churnToken(t *testing.T, user string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(churnSecret), auth.Claims{Sub: user}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// churnFrame is a gateway message as the churn test reads it.
type churnFrame struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Room     string          `json:"room"`
	To       string          `json:"to"`
	From     string          `json:"from"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	Conn     string          `json:"conn"`
	Instance string          `json:"instance"`
	Reason   string          `json:"reason"`
	Dropped  int             `json:"dropped"`
	Data     json.RawMessage `json:"data"`
}

// churnPayload is the data of every test message: its key, unique per
// message across the run.
type churnPayload struct {
	K string `json:"k"`
}

// churnWaitFor polls cond until it returns "" or d passes, and returns the
// last complaint (empty when cond held).
func churnWaitFor(d time.Duration, cond func() string) string {
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// churnErrTimeout is a wait for a gateway reply that ran out of time.
var churnErrTimeout = errors.New("timed out")
