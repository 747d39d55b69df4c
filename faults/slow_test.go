package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// TestSlowConsumers has some clients stop reading (connections open, no
// reads, a small receive buffer) while others read, under a steady flow of
// room messages. It proves that the readers get every message in order,
// that every client that stopped reading is closed with 4009 and, once it
// reads again, sees the 4009 close frame (sent ahead of the data it could
// no longer wait for), and that the gateway's peak RSS stays within the
// bound documented in docs/operations.md:
//
//	peak RSS <= idle RSS + 2 x (conns x -max-queue-bytes + loops x -loop-inbox-bytes
//	                            + -nats-pending-bytes + -publish-queue-bytes)
//
// (the factor 2 is the Go heap's growth before a collection at GOGC=100;
// idle RSS is measured once every client joined, before the flow).
func TestSlowConsumers(t *testing.T) {
	size := sizeOf(t)
	fastN := pick(size, 4, 40)
	slowN := pick(size, 12, 60)
	flow := pick(size, 3000, 10000) // messages of about 1 KiB
	const (
		pace       = time.Millisecond // one message per pace: ~1 MiB/s
		maxQueue   = 512 << 10        // -max-queue-bytes
		inboxBytes = 4 << 20          // -loop-inbox-bytes
		natsQueues = 4 << 20          // -nats-pending-bytes and -publish-queue-bytes, each
		loops      = 2
		room       = "flow"
	)

	ns := startNATS(t, 0)
	g := startGateway(t, "slow", nil, gatewayArgs(ns.ClientURL(),
		"-rate-msgs", "0", "-rate-bytes", "0",
		"-loops", strconv.Itoa(loops),
		"-max-queue-bytes", strconv.Itoa(maxQueue),
		"-loop-inbox-bytes", strconv.Itoa(inboxBytes),
		"-nats-pending-bytes", strconv.Itoa(natsQueues),
		"-publish-queue-bytes", strconv.Itoa(natsQueues),
		// A fixed send buffer (no autotuning up to 4 MiB): what a
		// client does not read piles up in the gateway, not the kernel.
		"-sndbuf", strconv.Itoa(64<<10),
		// The slow clients read again only after all of them were closed.
		"-close-timeout", "30s")...)

	source := mustDial(t, g.Addr, "source")
	if err := source.join(room); err != nil {
		t.Fatal(err)
	}
	fast := make([]*client, fastN)
	for i := range fast {
		fast[i] = mustDial(t, g.Addr, fmt.Sprintf("fast%d", i))
		if err := fast[i].join(room); err != nil {
			t.Fatal(err)
		}
	}
	slow := make([]*websocket.Conn, slowN)
	for i := range slow {
		slow[i] = dialNonReader(t, g.Addr, fmt.Sprintf("slow%d", i), room)
	}
	conns := 1 + fastN + slowN
	baselineKB, err := procStatusKB(g.pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}

	// The readers, in the background: every message, in order, no gap.
	type result struct {
		got  int
		fail string
	}
	results := make([]result, fastN)
	var readers sync.WaitGroup
	for i, c := range fast {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := &results[i]
			for r.got < flow {
				m, err := c.next(60 * time.Second)
				if err != nil {
					r.fail = fmt.Sprintf("after %d messages: %v (close code %d)", r.got, err, closeCode(err))
					return
				}
				if m.Type != "message" {
					r.fail = fmt.Sprintf("after %d messages: got %+v", r.got, m)
					return
				}
				n, err := seqOf(m)
				if err != nil {
					r.fail = err.Error()
					return
				}
				if n != r.got {
					r.fail = fmt.Sprintf("message %d arrived as number %d", n, r.got)
					return
				}
				r.got++
			}
		}()
	}

	// The flow: one message per pace from source; its acks are counted as
	// they come.
	pad := strings.Repeat("x", 1000)
	acks := 0
	tick := time.NewTicker(pace)
	start := time.Now()
	for n := 0; n < flow; n++ {
		<-tick.C
		if err := source.send(map[string]any{"type": "message", "room": room, "id": "m" + strconv.Itoa(n), "data": seqData{Seq: n, Pad: pad}}); err != nil {
			t.Fatal(err)
		}
		for drained := false; !drained; {
			select {
			case in := <-source.in:
				if in.err != nil || in.msg.Type != "ack" {
					t.Fatalf("source after %d messages: %+v %v", n, in.msg, in.err)
				}
				acks++
			default:
				drained = true
			}
		}
	}
	tick.Stop()
	sent := time.Since(start)
	for acks < flow {
		m, err := source.next(30 * time.Second)
		if err != nil || m.Type != "ack" {
			t.Fatalf("source waiting for acks (%d of %d): %+v %v", acks, flow, m, err)
		}
		acks++
	}
	readers.Wait()
	g.requireRunning()
	// The peak is behind us: the flow is over and nothing queues any more.
	peakKB, err := procStatusKB(g.pid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	boundKB := baselineKB + 2*int64(conns*maxQueue+loops*inboxBytes+2*natsQueues)/1024
	if peakKB > boundKB {
		t.Errorf("gateway peak RSS %d KiB > bound %d KiB = idle %d KiB + 2 x (%d conns x %d KiB + %d loops x %d KiB + 2 x %d KiB)",
			peakKB, boundKB, baselineKB, conns, maxQueue>>10, loops, inboxBytes>>10, natsQueues>>10)
	}

	delivered, failed := 0, 0
	for i, r := range results {
		delivered += r.got
		if r.fail != "" {
			failed++
			t.Errorf("reader fast%d: %s", i, r.fail)
		}
	}

	// Every slow client was closed by the gateway: wait for the counter,
	// then read each one to its close frame.
	var metrics map[string]float64
	waitUntil(t, 30*time.Second, func() string {
		m, err := g.metrics()
		if err != nil {
			return err.Error()
		}
		metrics = m
		if v := m["wsgate_slow_consumers_total"]; v < float64(slowN) {
			return fmt.Sprintf("wsgate_slow_consumers_total %.0f, want %d (every client that stopped reading)", v, slowN)
		}
		return ""
	})
	closed4009, dataBeforeClose := 0, 0
	for i, c := range slow {
		frames, code, err := readToClose(c)
		dataBeforeClose += frames
		if code == 4009 {
			closed4009++
		} else {
			t.Errorf("slow%d: read %d messages, then %v (close code %d), want close 4009", i, frames, err, code)
		}
	}
	t.Logf("slow consumers (%s): %d messages (~1 KiB) at %v each (sent in %v), %d acked; "+
		"%d readers got %d of %d in order (%d failed); %d of %d non-readers closed 4009 (close frame seen after %d queued messages); "+
		"wsgate_slow_consumers_total %.0f; RSS idle %d KiB, peak %d KiB, bound %d KiB "+
		"(idle + 2 x (%d conns x %d KiB + %d loops x %d KiB + 2 NATS queues x %d KiB))",
		size, flow, pace, sent.Round(time.Millisecond), acks,
		fastN, delivered, fastN*flow, failed, closed4009, slowN, dataBeforeClose,
		metrics["wsgate_slow_consumers_total"], baselineKB, peakKB, boundKB,
		conns, maxQueue>>10, loops, inboxBytes>>10, natsQueues>>10)
	if v := metrics["wsgate_slow_consumers_total"]; v != float64(slowN) {
		t.Errorf("wsgate_slow_consumers_total %.0f, want %d: a reader was judged slow", v, slowN)
	}
}

// dialNonReader connects user with an 8 KiB receive buffer, joins room,
// and returns the connection, which the test then does not read.
func dialNonReader(t *testing.T, addr, user, room string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10)
			}); err != nil {
				return err
			}
			return serr
		}}).DialContext,
	}
	c, _, err := d.DialContext(context.Background(), "ws://"+addr+"/ws?token="+token(t, user), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	want := []string{"auth:ok", "joined"}
	if err := c.WriteJSON(map[string]any{"type": "join", "room": room}); err != nil {
		t.Fatalf("%s: join: %v", user, err)
	}
	for len(want) > 0 {
		var m frameMsg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("%s: waiting for %s: %v", user, want[0], err)
		}
		if m.Type == want[0] {
			want = want[1:]
		}
	}
	return c
}

// readToClose reads c until it ends, counting data messages; it returns
// the close code (0 when the connection ended without a close frame).
func readToClose(c *websocket.Conn) (int, int, error) {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	frames := 0
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return frames, closeCode(err), err
		}
		if json.Valid(b) {
			frames++
		}
	}
}
