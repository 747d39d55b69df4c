package main

import (
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// clientLog is what one client saw until its connection ended.
type clientLog struct {
	msgs      []frameMsg
	times     []time.Time
	closeCode int
	closedAt  time.Time
	err       error
}

// collect reads until the connection ends.
func collect(cl *wsClient, out *clientLog, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		m, err := cl.readErr(30 * time.Second)
		if err != nil {
			out.closeCode, out.closedAt, out.err = closeCode(err), time.Now(), err
			return
		}
		out.msgs = append(out.msgs, m)
		out.times = append(out.times, time.Now())
	}
}

// TestDrain is PROTOCOL.md section 7 against the real binary: SIGTERM turns
// /readyz to 503 at once and refuses new upgrades, every client gets what
// was sent before the signal, then `reconnect` with a spread after_ms, then
// a 1001 close no earlier than that; the process exits 0 within the drain
// time plus a margin.
func TestDrain(t *testing.T) {
	const (
		clients   = 20
		msgs      = 5
		drainTime = 2 * time.Second
	)
	gw := startGateway(t, baseArgs("-drain-time", drainTime.String())...)

	cls := make([]*wsClient, clients)
	for i := range cls {
		cls[i] = dialClient(t, gw.Addr, fmt.Sprintf("user%d", i))
		cls[i].join("lobby")
	}
	// The sender waits for its acks: then the gateway has taken every
	// message in and queued (or handed to the other loops) its deliveries
	// before the signal is even sent.
	sender := cls[0]
	for j := range msgs {
		sender.send(map[string]any{"type": "message", "room": "lobby", "data": j, "id": fmt.Sprintf("m%d", j)})
	}
	for acks := 0; acks < msgs; {
		m := sender.read()
		if m.Type != "ack" {
			t.Fatalf("sender: got %+v, want ack", m)
		}
		acks++
	}

	logs := make([]clientLog, clients)
	var wg sync.WaitGroup
	for i, cl := range cls {
		wg.Add(1)
		go collect(cl, &logs[i], &wg)
	}

	sigAt := time.Now()
	gw.Signal(syscall.SIGTERM)

	// Not ready at once (how fast depends on the machine: logged, with a
	// generous bound).
	var readyAfter time.Duration
	waitFor(t, 10*time.Second, func() string {
		code, body, err := gw.adminGet("/readyz")
		if err != nil {
			return err.Error()
		}
		if code != http.StatusServiceUnavailable {
			return fmt.Sprintf("/readyz = %d %q, want 503", code, body)
		}
		readyAfter = time.Since(sigAt)
		return ""
	})
	t.Logf("/readyz turned 503 %v after the signal", readyAfter.Round(time.Microsecond))

	// New upgrades are refused with 503 while draining.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws?token="+token(t, "late"), nil)
	if err == nil {
		t.Fatal("upgrade during drain succeeded, want 503")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("upgrade during drain: %v (status %d), want 503", err, status)
	}

	code, exited := gw.Wait(drainTime + 15*time.Second)
	if !exited {
		t.Fatalf("gateway still running %v after SIGTERM", drainTime+15*time.Second)
	}
	exitAfter := time.Since(sigAt)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	t.Logf("exited 0 %v after SIGTERM", exitAfter.Round(time.Millisecond))
	wg.Wait()

	seen := map[int64]bool{}
	for i, l := range logs {
		user := cls[i].user
		var got []string
		reconnect := -1
		for k, m := range l.msgs {
			switch m.Type {
			case "message":
				if reconnect >= 0 {
					t.Errorf("%s: message %s after reconnect", user, m.ID)
				}
				got = append(got, string(m.Data))
			case "reconnect":
				if reconnect >= 0 {
					t.Errorf("%s: second reconnect", user)
				}
				reconnect = k
			default:
				t.Errorf("%s: unexpected %+v", user, m)
			}
		}
		if i != 0 && len(got) != msgs {
			t.Errorf("%s: got %d messages %v before the close, want %d", user, len(got), got, msgs)
		}
		if reconnect < 0 {
			t.Errorf("%s: no reconnect message (saw %+v)", user, l.msgs)
			continue
		}
		after := l.msgs[reconnect].AfterMS
		if after == nil || *after < 0 || *after >= drainTime.Milliseconds() {
			t.Errorf("%s: after_ms %v, want in [0, %d)", user, after, drainTime.Milliseconds())
			continue
		}
		seen[*after] = true
		if l.closeCode != websocket.CloseGoingAway {
			t.Errorf("%s: connection ended with %v (code %d), want close 1001", user, l.err, l.closeCode)
			continue
		}
		// The close comes at the connection's own moment: no earlier than
		// after_ms after the drain began (which is after sigAt).
		if el := l.closedAt.Sub(sigAt); el < time.Duration(*after)*time.Millisecond {
			t.Errorf("%s: closed %v after the signal, before its after_ms %d", user, el, *after)
		}
	}
	if len(seen) < clients/2 {
		t.Errorf("after_ms values not spread: %d distinct among %d clients: %v", len(seen), clients, seen)
	}
}

// TestDrainSecondSignal: a second signal during the drain exits at once
// (status 1) instead of waiting out -drain-time.
func TestDrainSecondSignal(t *testing.T) {
	gw := startGateway(t, baseArgs("-drain-time", "30s")...)
	cls := make([]*wsClient, 3)
	for i := range cls {
		cls[i] = dialClient(t, gw.Addr, fmt.Sprintf("u%d", i))
		cls[i].join("lobby")
	}
	gw.Signal(syscall.SIGTERM)
	// Each client hears reconnect: the drain has started.
	for _, cl := range cls {
		if m := cl.read(); m.Type != "reconnect" {
			t.Fatalf("%s: got %+v, want reconnect", cl.user, m)
		}
	}
	start := time.Now()
	gw.Signal(syscall.SIGTERM)
	code, exited := gw.Wait(15 * time.Second)
	if !exited {
		t.Fatal("gateway still running 15s after the second signal (its -drain-time is 30s)")
	}
	if code != 1 {
		t.Fatalf("exit code %d after the second signal, want 1", code)
	}
	t.Logf("exited %d %v after the second signal", code, time.Since(start).Round(time.Millisecond))
}

// TestDrainEcho: echo mode speaks raw WebSocket, so the drain sends no
// reconnect message, only 1001 closes spread over the drain time.
func TestDrainEcho(t *testing.T) {
	gw := startGateway(t, "-echo", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-drain-time", "500ms", "-loops", "2")
	const n = 6
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, b, err := c.ReadMessage(); err != nil || string(b) != "hi" {
			t.Fatalf("echo: %q, %v", b, err)
		}
		conns[i] = c
	}
	gw.Signal(syscall.SIGINT)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		mt, b, err := c.ReadMessage()
		if err == nil {
			t.Fatalf("conn %d: got message type %d %q during drain, want only a close", i, mt, b)
		}
		if code := closeCode(err); code != websocket.CloseGoingAway {
			t.Fatalf("conn %d: %v, want close 1001", i, err)
		}
	}
	if code, ok := gw.Wait(15 * time.Second); !ok || code != 0 {
		t.Fatalf("exit %d (exited %v), want 0", code, ok)
	}
}
