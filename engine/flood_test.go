package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A connection flood at the process's descriptor limit (issue 9, defect 1).
// The gateway runs in a child process (this test binary re-executed) with a
// low RLIMIT_NOFILE, so the flood exhausts its descriptors and not the test's.

const (
	floodChildEnv = "WSGATE_ENGINE_FLOOD_CHILD"
	floodLimit    = 200 // the child's RLIMIT_NOFILE
)

// TestFloodChild is the child: it lowers its descriptor limit, runs an echo
// engine and answers commands on stdin until stdin closes.
//
//	stats  -> "stats accepted=A shed=S shedfd=F errors=E open=O"
//	eat    -> opens /dev/null until EMFILE, keeps the descriptors: "ate N"
//	free   -> closes them: "freed"
//
// When the engine ends by itself it prints "engine ended" and exits 3.
func TestFloodChild(t *testing.T) {
	if os.Getenv(floodChildEnv) == "" {
		t.Skip("the child of TestAcceptFlood")
	}
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "child: "+format+"\n", args...)
		out.Flush()
	}
	lim := syscall.Rlimit{Cur: floodLimit, Max: floodLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		say("error setrlimit: %v", err)
		os.Exit(2)
	}
	e, err := New(Options{Addr: "127.0.0.1:0", Loops: 2, HandshakeTimeout: time.Minute}, EchoHandler{})
	if err == nil {
		err = e.Start()
	}
	if err != nil {
		say("error start: %v", err)
		os.Exit(2)
	}
	go func() {
		<-e.Done()
		say("engine ended")
		os.Exit(3)
	}()
	say("addr %s", e.Addr())
	var eaten []int
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			st := e.AcceptStats()
			say("stats accepted=%d shed=%d shedfd=%d errors=%d open=%d", st.Accepted, st.Shed(), st.ShedDescriptors, st.AcceptErrors, e.OpenConns())
		case "eat":
			for {
				fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
				if err != nil {
					break
				}
				eaten = append(eaten, fd)
			}
			say("ate %d", len(eaten))
		case "free":
			for _, fd := range eaten {
				_ = syscall.Close(fd)
			}
			eaten = nil
			say("freed")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.Stop(ctx)
	os.Exit(0)
}

// floodChild is the parent's handle on the child.
type floodChild struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	addr  string
}

func startFloodChild(t *testing.T) *floodChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFloodChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), floodChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fc := &floodChild{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "child: "); ok {
				fc.lines <- line
			}
		}
		close(fc.lines)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	addr := fc.expect("addr ")
	fc.addr = addr
	return fc
}

// expect returns the rest of the next line from the child starting with
// prefix; any other line but the ones it skips fails the test.
func (fc *floodChild) expect(prefix string) string {
	fc.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-fc.lines:
			if !ok {
				fc.t.Fatalf("child exited while we waited for %q", prefix)
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest
			}
			if line == "engine ended" || strings.HasPrefix(line, "error") {
				fc.t.Fatalf("child: %s (waiting for %q)", line, prefix)
			}
		case <-timeout:
			fc.t.Fatalf("no %q from the child", prefix)
		}
	}
}

func (fc *floodChild) command(cmd, answer string) string {
	fc.t.Helper()
	if _, err := io.WriteString(fc.stdin, cmd+"\n"); err != nil {
		fc.t.Fatalf("child gone: %v", err)
	}
	return fc.expect(answer)
}

// stats asks the child for its acceptor counters.
func (fc *floodChild) stats() map[string]int {
	fc.t.Helper()
	m := map[string]int{}
	for _, kv := range strings.Fields(fc.command("stats", "stats ")) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			fc.t.Fatalf("stats: %q", kv)
		}
		m[k] = n
	}
	return m
}

// settled waits until the child's acceptor has taken n more connections
// (accepted or shed) than in before, and returns its stats.
func (fc *floodChild) settled(before map[string]int, n int) map[string]int {
	fc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := fc.stats()
		if st["accepted"]+st["shed"] >= before["accepted"]+before["shed"]+n {
			return st
		}
		if time.Now().After(deadline) {
			fc.t.Fatalf("acceptor took %d of %d connections: %v -> %v", st["accepted"]+st["shed"]-before["accepted"]-before["shed"], n, before, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echo checks one round trip on an open client.
func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("echo %q: write: %v", msg, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, p, err := c.ReadMessage()
	if err != nil || string(p) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, p, err)
	}
}

// flood opens n TCP connections that never send a byte and keeps them.
// Dials that fail (a full backlog) are counted, not fatal.
func flood(addr string, n int) (conns []net.Conn, failed int) {
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, c)
	}
	return conns, failed
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// anyShed503 reports whether one of conns got the acceptor's 503 and EOF.
func anyShed503(conns []net.Conn) bool {
	for i := len(conns) - 1; i >= 0; i-- {
		c := conns[i]
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b, err := io.ReadAll(c)
		if bytes.HasPrefix(b, []byte("HTTP/1.1 503 ")) && err == nil {
			return true
		}
	}
	return false
}

// dialUntilEcho dials new clients until one upgrades and echoes: shed
// connections are expected while the flood's descriptors are being freed.
func dialUntilEcho(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			echo(t, c, "after the flood")
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new client could connect after the flood: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAcceptFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	fc := startFloodChild(t)
	url := "ws://" + fc.addr + "/ws"
	legit, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("legitimate client: %v", err)
	}
	defer legit.Close()
	echo(t, legit, "before")

	t.Run("half-open flood past the descriptor limit", func(t *testing.T) {
		before := fc.stats()
		conns, failed := flood(fc.addr, 3*floodLimit)
		defer closeAll(conns)
		st := fc.settled(before, len(conns)) // the child is alive and answering
		t.Logf("flood of %d: %d dials failed; child: %v", 3*floodLimit, failed, st)
		echo(t, legit, "during")
		if st["shed"] == 0 {
			t.Fatalf("nothing shed: %v", st)
		}
		if !anyShed503(conns) {
			t.Error("no flood connection got the 503 before its close")
		}
		closeAll(conns)
		dialUntilEcho(t, url)
		echo(t, legit, "after")
	})

	t.Run("accept hits EMFILE", func(t *testing.T) {
		// Descriptors taken elsewhere in the process: the acceptor's own
		// count cannot see them coming, accept fails with EMFILE.
		before := fc.stats()
		fc.command("eat", "ate ")
		conns, _ := flood(fc.addr, 20)
		st := fc.settled(before, len(conns))
		echo(t, legit, "while starved")
		fc.command("free", "freed")
		closeAll(conns)
		t.Logf("child: %v", st)
		// Every flood connection is shed for descriptors, or accepted when
		// a descriptor freed meanwhile (the previous subtest's connections
		// may still be closing in the child when it eats the rest).
		shed, accepted := st["shedfd"]-before["shedfd"], st["accepted"]-before["accepted"]
		if st["errors"] == before["errors"] || shed == 0 || shed+accepted < len(conns) {
			t.Fatalf("accept errors %d -> %d, shed for descriptors %d, accepted %d, of %d: EMFILE not met or not shed",
				before["errors"], st["errors"], shed, accepted, len(conns))
		}
		dialUntilEcho(t, url)
	})

	if err := legit.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Log(err)
	}
}
