package harness

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/bench/procstat"
)

// TargetSpec describes a server under test: how to build and start it, or
// where an already-running one listens.
type TargetSpec struct {
	Name string
	// Pkg is the Go package to build (relative to ModDir, e.g. ./cmd/gateway).
	Pkg string
	// ModDir is the directory (relative to the module root) to build in; ""
	// is the root. Used for nested modules (bench/peers/nbio).
	ModDir string
	// Bin is a prebuilt binary; when set nothing is built.
	Bin string
	// Args is the argument template: {addr} {admin} {mode} {modeflag}
	// ({modeflag} is -echo or -broadcast).
	Args []string
	// Health is an HTTP path on {admin} that must answer 200 before the run.
	Health string
	// Path is the WebSocket path (default /ws).
	Path string
	// URL, when set, is an already-running external target (ws://host:port/path);
	// Pid (optional) is sampled for RSS/CPU.
	URL string
	Pid int
	// Modes the target can run in (nil = echo and broadcast; external URL
	// targets are taken to run whatever the scenario needs). The gateway
	// also has "router" (JWT auth, rooms, NATS backplane).
	Modes []string
	// PprofArgs enable net/http/pprof on {admin} (wsbench -profile).
	PprofArgs []string
	// Install, when set, provides the binary instead of a build (e.g. a
	// `go install` of a third-party server into a cache folder).
	Install func() (string, error)
	// Prepare, when set, replaces Args: it may write files (a config) into
	// dir and returns the command line for the instance's address.
	Prepare func(in *Instance, dir string) ([]string, error)
	// Codec is the payload codec the target speaks ("" = raw frames).
	Codec string
	// SelfDelivery: in broadcast a publisher receives its own messages too
	// (a pub/sub server), so every message reaches every connection.
	SelfDelivery bool
}

// Supports reports whether the target can run in mode.
func (ts TargetSpec) Supports(mode string) bool {
	if ts.URL != "" || mode == "echo" || mode == "broadcast" {
		return true
	}
	for _, m := range ts.Modes {
		if m == mode {
			return true
		}
	}
	return false
}

// Builtin targets.
var Builtin = map[string]TargetSpec{
	"gateway": {Name: "gateway", Pkg: "./cmd/gateway", Args: []string{"{modeflag}", "-addr", "{addr}", "-admin-addr", "{admin}", "-drain-time", "0s"}, Health: "/healthz",
		Modes: []string{"echo", "broadcast", "router"}, PprofArgs: []string{"-pprof"}},
	// the gateway with one event loop: the same resources as uWS's one
	// loop, and the right setting where the load client (or anything else
	// busy) shares the host's cores (docs/benchmarks.md "Loops")
	"gateway-1loop": {Name: "gateway-1loop", Pkg: "./cmd/gateway", Args: []string{"{modeflag}", "-addr", "{addr}", "-admin-addr", "{admin}", "-drain-time", "0s", "-loops", "1"}, Health: "/healthz",
		Modes: []string{"echo", "broadcast", "router"}, PprofArgs: []string{"-pprof"}},
	"gorilla": {Name: "gorilla", Pkg: "./bench/peers/gorilla", Args: []string{"-addr", "{addr}", "-mode", "{mode}"}},
	// nbio as its authors recommend for a light handler: handler on the
	// pollers, batching broadcast hub (see bench/peers/nbio).
	"nbio": {Name: "nbio", Pkg: "./bench/peers/nbio", Args: []string{"-addr", "{addr}", "-mode", "{mode}", "-pollers", "2"}},
	// the earlier nbio peer: nbhttp's default handler goroutine pool, one
	// write per frame per receiver under a RWMutex
	"nbio-pool": {Name: "nbio-pool", Pkg: "./bench/peers/nbio", Args: []string{"-addr", "{addr}", "-mode", "{mode}", "-pollers", "2", "-executor", "pool", "-hub", "mutex"}},
}

// ParseTarget parses a -target value:
//
//	gateway | gateway-1loop | gorilla | nbio | nbio-pool | centrifugo | uws   builtin
//	name=ws://127.0.0.1:9000/ws[#pid]   external, already running
//	name=/path/bin -flag {addr} ...     custom binary with an argument template
func ParseTarget(s string) (TargetSpec, error) {
	if b, ok := Builtin[s]; ok {
		return b, nil
	}
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return TargetSpec{}, fmt.Errorf("target %q: want a builtin (%s) or name=ws://host:port/path[#pid] or name=binary args", s, "gateway, gateway-1loop, gorilla, nbio, nbio-pool, centrifugo, uws")
	}
	if strings.HasPrefix(rest, "ws://") {
		ts := TargetSpec{Name: name, URL: rest}
		if u, p, ok := strings.Cut(rest, "#"); ok {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return ts, fmt.Errorf("target %q: bad pid", s)
			}
			ts.URL, ts.Pid = u, pid
		}
		return ts, nil
	}
	f := strings.Fields(rest)
	return TargetSpec{Name: name, Bin: f[0], Args: f[1:]}, nil
}

// Builder builds target binaries once per run into a temp dir.
type Builder struct {
	Root string // module root
	Dir  string
	mu   sync.Mutex
	done map[string]string
	errs map[string]error
}

// NewBuilder makes a builder; root "" finds the module root from the cwd.
func NewBuilder(root string) (*Builder, error) {
	if root == "" {
		var err error
		root, err = FindModuleRoot()
		if err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "wsbench-bin-")
	if err != nil {
		return nil, err
	}
	return &Builder{Root: root, Dir: dir, done: map[string]string{}, errs: map[string]error{}}, nil
}

// Cleanup removes built binaries.
func (b *Builder) Cleanup() { _ = os.RemoveAll(b.Dir) }

// FindModuleRoot walks up from the cwd to the go.mod of github.com/wsgate/wsgate.
func FindModuleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		bs, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(bs), "module github.com/wsgate/wsgate\n") {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("cannot find the wsgate module root (run from the repo or pass -src)")
		}
		d = p
	}
}

// Binary returns the path of the built binary for spec.
func (b *Builder) Binary(ts TargetSpec) (string, error) {
	if ts.Bin != "" {
		return ts.Bin, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.done[ts.Name]; ok {
		return p, nil
	}
	if err, ok := b.errs[ts.Name]; ok {
		return "", err
	}
	if ts.Install != nil {
		p, err := ts.Install()
		if err != nil {
			b.errs[ts.Name] = err
			return "", err
		}
		b.done[ts.Name] = p
		return p, nil
	}
	out := filepath.Join(b.Dir, ts.Name)
	cmd := exec.Command("go", "build", "-o", out, ts.Pkg)
	cmd.Dir = filepath.Join(b.Root, ts.ModDir)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("go build %s: %v: %s", ts.Pkg, err, strings.TrimSpace(string(msg)))
		b.errs[ts.Name] = err
		return "", err
	}
	b.done[ts.Name] = out
	return out, nil
}

// Instance is a running target.
type Instance struct {
	Spec  TargetSpec
	Mode  string
	Addr  string // host:port of the WebSocket listener
	Admin string
	Path  string
	Pid   int
	bin   string
	args  []string
	cmd   *exec.Cmd
	log   *os.File
	exit  chan struct{}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start launches (or, for an external URL, attaches to) the target in mode
// (echo|broadcast) and waits until it accepts connections.
func Start(b *Builder, ts TargetSpec, mode, logPath string) (*Instance, error) {
	return StartWith(b, ts, mode, nil, logPath)
}

// StartWith is Start with extra arguments appended to the target's command
// line. Mode "router" expands {modeflag} to nothing: the gateway's default
// mode, configured by extra (-jwt-secret, -nats-listen, ...).
func StartWith(b *Builder, ts TargetSpec, mode string, extra []string, logPath string) (*Instance, error) {
	in := &Instance{Spec: ts, Mode: mode, Path: ts.Path}
	if in.Path == "" {
		in.Path = "/ws"
	}
	if ts.URL != "" {
		u, err := url.Parse(ts.URL)
		if err != nil {
			return nil, err
		}
		in.Addr, in.Path, in.Pid = u.Host, u.RequestURI(), ts.Pid
		return in, waitTCP(in.Addr, 10*time.Second, nil)
	}
	bin, err := b.Binary(ts)
	if err != nil {
		return nil, err
	}
	in.bin = bin
	if in.Addr, err = freePort(); err != nil {
		return nil, err
	}
	if in.Admin, err = freePort(); err != nil {
		return nil, err
	}
	modeflag := "-echo"
	switch mode {
	case "broadcast":
		modeflag = "-broadcast"
	case "router":
		modeflag = ""
	}
	r := strings.NewReplacer("{addr}", in.Addr, "{admin}", in.Admin, "{mode}", mode, "{modeflag}", modeflag)
	for _, a := range ts.Args {
		if a = r.Replace(a); a != "" {
			in.args = append(in.args, a)
		}
	}
	if ts.Prepare != nil {
		if in.args, err = ts.Prepare(in, b.Dir); err != nil {
			return nil, fmt.Errorf("%s: %w", ts.Name, err)
		}
	}
	in.args = append(in.args, extra...)
	if logPath != "" {
		_ = os.MkdirAll(filepath.Dir(logPath), 0o755)
		if in.log, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
	}
	return in, in.launch()
}

func (in *Instance) launch() error {
	cmd := exec.Command(in.bin, in.args...)
	if in.log != nil {
		cmd.Stdout, cmd.Stderr = in.log, in.log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	in.cmd, in.Pid = cmd, cmd.Process.Pid
	in.exit = make(chan struct{})
	go func() { _ = cmd.Wait(); close(in.exit) }()
	if err := waitTCP(in.Addr, 30*time.Second, in.exit); err != nil {
		in.Kill()
		return fmt.Errorf("%s did not come up: %w (see its log)", in.Spec.Name, err)
	}
	if in.Spec.Health != "" && in.Admin != "" {
		if err := waitHealth("http://"+in.Admin+in.Spec.Health, 30*time.Second, in.exit); err != nil {
			in.Kill()
			return fmt.Errorf("%s health: %w", in.Spec.Name, err)
		}
	}
	return nil
}

func waitTCP(addr string, d time.Duration, exit chan struct{}) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if exit != nil {
			select {
			case <-exit:
				return errors.New("process exited")
			default:
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitHealth(u string, d time.Duration, exit chan struct{}) error {
	deadline := time.Now().Add(d)
	cl := &http.Client{Timeout: time.Second}
	for {
		resp, err := cl.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-exit:
			return errors.New("process exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sample reads the server's RSS and CPU (zero if unknown).
func (in *Instance) Sample() procstat.Sample {
	if in.Pid <= 0 {
		return procstat.Sample{}
	}
	s, _ := procstat.Read(in.Pid)
	return s
}

// Alive reports whether a started process still runs.
func (in *Instance) Alive() bool {
	if in.cmd == nil {
		return true
	}
	select {
	case <-in.exit:
		return false
	default:
		return true
	}
}

// Kill stops a started process (SIGKILL) and waits for it.
func (in *Instance) Kill() {
	if in.cmd == nil {
		return
	}
	_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-in.exit:
	case <-time.After(10 * time.Second):
	}
}

// Stop ends a started process gracefully (SIGTERM, then SIGKILL after 3 s).
func (in *Instance) Stop() {
	if in.cmd == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exit:
	case <-time.After(3 * time.Second):
		in.Kill()
	}
	if in.log != nil {
		in.log.Close()
		in.log = nil
	}
}

// Restart starts the process again on the same ports (after Kill).
func (in *Instance) Restart() error {
	if in.cmd == nil {
		return errors.New("external target cannot be restarted")
	}
	return in.launch()
}
