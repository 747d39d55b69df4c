// Command densityprobe attributes the gateway's memory per idle connection.
// It runs the engine in-process in echo mode (no pings, no idle timeout),
// starts a copy of itself as the client (so client sockets and their memory
// are in another process), waits until every connection is upgraded, runs
// the GC and writes a heap profile with every allocation sampled:
//
//	go run ./cmd/densityprobe -n 10000 -out /tmp/heap.pprof
//	go tool pprof -top -sample_index=inuse_space /tmp/heap.pprof
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
	"unsafe"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/frame"
)

func main() {
	n := flag.Int("n", 10000, "idle connections")
	out := flag.String("out", "heap.pprof", "heap profile path")
	client := flag.String("client", "", "internal: run as the client against this address")
	flag.Parse()
	if *client != "" {
		if err := runClient(*client, *n); err != nil {
			fmt.Fprintln(os.Stderr, "densityprobe client:", err)
			os.Exit(1)
		}
		return
	}
	runtime.MemProfileRate = 1
	if err := runServer(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "densityprobe:", err)
		os.Exit(1)
	}
}

func runServer(n int, out string) error {
	eng, err := engine.New(engine.Options{Addr: "127.0.0.1:0", PingInterval: -1, IdleTimeout: -1}, engine.EchoHandler{})
	if err != nil {
		return err
	}
	if err := eng.Start(); err != nil {
		return err
	}
	defer eng.Stop(context.Background())

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-client", eng.Addr(), "-n", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		return fmt.Errorf("client: %q %v", line, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for eng.OpenConns() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := eng.OpenConns(); got != n {
		return fmt.Errorf("%d of %d connections open", got, n)
	}
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	fmt.Printf("connections            %d\n", n)
	fmt.Printf("unsafe.Sizeof(engine.Conn) %d B\n", unsafe.Sizeof(engine.Conn{}))
	fmt.Printf("unsafe.Sizeof(frame.Decoder) %d B\n", unsafe.Sizeof(frame.Decoder{}))
	fmt.Printf("HeapAlloc  per conn    %.0f B (live after GC)\n", per(after.HeapAlloc, before.HeapAlloc))
	fmt.Printf("HeapInuse  per conn    %.0f B (spans in use)\n", per(after.HeapInuse, before.HeapInuse))
	fmt.Printf("HeapSys    per conn    %.0f B\n", per(after.HeapSys, before.HeapSys))
	fmt.Printf("Sys        per conn    %.0f B (all runtime memory)\n", per(after.Sys, before.Sys))
	fmt.Printf("Mallocs-Frees per conn %.2f objects\n", per(after.Mallocs-after.Frees, before.Mallocs-before.Frees))
	fmt.Printf("heap profile           %s\n", out)
	return nil
}

const upgradeRequest = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// runClient opens n upgraded connections to addr, says "ready" and holds
// them until stdin closes.
func runClient(addr string, n int) error {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/5000))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("conn %d: %w", i, err)
		}
		if _, err := io.WriteString(c, upgradeRequest); err != nil {
			return err
		}
		var head [512]byte
		k := 0
		for !bytes.Contains(head[:k], []byte("\r\n\r\n")) {
			m, err := c.Read(head[k:])
			k += m
			if err != nil {
				return fmt.Errorf("conn %d: reading 101: %w", i, err)
			}
		}
		if !bytes.HasPrefix(head[:k], []byte("HTTP/1.1 101 ")) {
			return fmt.Errorf("conn %d: %q", i, head[:k])
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}
