package faults

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodLimit is the gateway's open-file limit in the flood scenario: low,
// so a flood from one test process passes it many times over.
const floodLimit = 256

// upgradeRequest is a complete WebSocket upgrade without a token: the
// connection is upgraded (unless shed) and then waits for auth.
const upgradeRequest = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// floodConn outcomes, by the first bytes the gateway sent.
type floodTally struct {
	dialed, dialErrors, shed503, upgraded101, closedSilently, stillOpen atomic.Int64
}

// TestFloodToDescriptorLimit floods a gateway whose RLIMIT_NOFILE is
// floodLimit with TCP connections (two in three send nothing, one in three
// a complete upgrade without a token) many times past the limit. It proves
// that an accept error never ends the process (gnet's own acceptor shut
// the engine down on EMFILE), that a client connected before the flood
// round-trips room messages throughout, that each new client during the
// flood is either served completely or refused with 503 before the upgrade
// (shed), and that new clients are served again once the flood is gone.
func TestFloodToDescriptorLimit(t *testing.T) {
	size := sizeOf(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skipf("cannot lower the gateway's open-file limit: prlimit(1) (util-linux) not on $PATH: %v", err)
	}
	// The flood: floodRate connections a second for floodFor, from four
	// dialers (shed ones are closed as soon as they read 503, so the
	// test's own descriptors stay bounded; the rate keeps the loopback's
	// ephemeral ports, ~28k, from running out).
	floodRate := pick(size, 3000, 2000)
	floodFor := pick(size, 3*time.Second, 20*time.Second)
	floodMax := floodRate * int(floodFor/time.Second)

	ns := startNATS(t, 0)
	g := startGateway(t, "flood", []string{prlimit, fmt.Sprintf("--nofile=%d:%d", floodLimit, floodLimit), "--"},
		gatewayArgs(ns.ClientURL(), "-rate-msgs", "0", "-handshake-timeout", "2s", "-auth-timeout", "2s")...)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", g.pid()))
	if err != nil {
		t.Fatalf("read the gateway's limits: %v", err)
	}
	if !hasOpenFileLimit(string(limits), floodLimit) {
		t.Skipf("prlimit did not lower the gateway's open-file limit to %d:\n%s", floodLimit, limits)
	}

	// The legitimate pair, connected before the flood: alice sends, bob
	// receives.
	alice, bob := mustDial(t, g.Addr, "alice"), mustDial(t, g.Addr, "bob")
	for _, c := range []*client{alice, bob} {
		if err := c.join("lobby"); err != nil {
			t.Fatal(err)
		}
	}
	roundTrips := 0
	roundTrip := func() error {
		roundTrips++
		id := fmt.Sprintf("rt%d", roundTrips)
		if err := alice.send(map[string]any{"type": "message", "room": "lobby", "id": id, "data": seqData{Seq: roundTrips}}); err != nil {
			return err
		}
		for acked := false; !acked; {
			m, err := alice.next(5 * time.Second)
			if err != nil {
				return fmt.Errorf("round trip %d: ack: %w", roundTrips, err)
			}
			if m.Type == "error" {
				return fmt.Errorf("round trip %d: %+v", roundTrips, m)
			}
			acked = m.Type == "ack" && m.ID == id
		}
		for {
			m, err := bob.next(5 * time.Second)
			if err != nil {
				return fmt.Errorf("round trip %d: delivery: %w", roundTrips, err)
			}
			if m.Type != "message" {
				continue
			}
			n, err := seqOf(m)
			if err != nil {
				return err
			}
			if n == roundTrips {
				return nil
			}
			return fmt.Errorf("round trip %d: bob got message %d", roundTrips, n)
		}
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("before the flood: %v", err)
	}

	// Dial permits, floodRate/100 every 10 ms.
	permits := make(chan struct{}, floodRate)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for released := 0; released < floodMax; {
			<-tick.C
			for i := 0; i < floodRate/100 && released < floodMax; i++ {
				permits <- struct{}{}
				released++
			}
		}
		close(permits)
	}()
	floodStart := time.Now()
	var tally floodTally
	var connsMu sync.Mutex
	var conns []net.Conn
	var readers sync.WaitGroup
	stopFlood := make(chan struct{})
	var dialers sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 4; w++ {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for {
				select {
				case <-stopFlood:
					return
				case _, ok := <-permits:
					if !ok {
						return
					}
				}
				i := next.Add(1)
				c, err := net.DialTimeout("tcp", g.Addr, 3*time.Second)
				if err != nil {
					tally.dialErrors.Add(1)
					continue
				}
				tally.dialed.Add(1)
				if i%3 == 0 {
					_ = c.SetWriteDeadline(time.Now().Add(time.Second))
					_, _ = c.Write([]byte(upgradeRequest))
				}
				connsMu.Lock()
				conns = append(conns, c)
				connsMu.Unlock()
				readers.Add(1)
				go func() { // what did the gateway answer? Ends when either side closes c.
					defer readers.Done()
					defer c.Close()
					var buf [64]byte
					n, _ := c.Read(buf[:])
					switch {
					case bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 503")):
						tally.shed503.Add(1)
					case bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101")):
						tally.upgraded101.Add(1)
						_, _ = io.Copy(io.Discard, c) // until the 4008 close (no auth)
					case n == 0:
						tally.closedSilently.Add(1)
					}
				}()
			}
		}()
	}
	floodDone := make(chan struct{})
	go func() { dialers.Wait(); close(floodDone) }()

	// Meanwhile: a round trip every 100 ms, a new client every 300 ms.
	var served, refused, resets int
	checks := time.NewTicker(100 * time.Millisecond)
	defer checks.Stop()
	during := 0
	for flooding := true; flooding; {
		select {
		case <-floodDone:
			flooding = false
		case <-checks.C:
		}
		g.requireRunning()
		if err := roundTrip(); err != nil {
			close(stopFlood)
			t.Fatalf("during the flood (%d connections dialed): %v", tally.dialed.Load(), err)
		}
		during++
		if during%3 == 0 {
			switch ok, status, err := newClientServed(t, g.Addr, fmt.Sprintf("new%d", during)); {
			case ok:
				served++
			case status == 503:
				refused++
			case isReset(err):
				resets++ // shed: 503 and close raced the request
			default:
				close(stopFlood)
				t.Fatalf("a new client during the flood was neither served nor refused with 503: %v", err)
			}
		}
	}
	floodDials := tally.dialed.Load()
	floodTook := time.Since(floodStart)
	g.requireRunning()

	// The flood ends: close every flood connection; a new client is
	// served again.
	connsMu.Lock()
	for _, c := range conns {
		_ = c.Close()
	}
	connsMu.Unlock()
	readers.Wait()
	tally.stillOpen.Store(floodDials - tally.shed503.Load() - tally.upgraded101.Load() - tally.closedSilently.Load())
	var lastErr error
	waitUntil(t, 15*time.Second, func() string {
		g.requireRunning()
		ok, _, err := newClientServed(t, g.Addr, "after")
		if ok {
			return ""
		}
		lastErr = err
		return fmt.Sprintf("no new client served after the flood: %v", lastErr)
	})
	if err := roundTrip(); err != nil {
		t.Fatalf("after the flood: %v", err)
	}

	if floodDials < 2*floodLimit {
		t.Fatalf("only %d flood connections dialed, want at least %d (2x the limit)", floodDials, 2*floodLimit)
	}
	if tally.shed503.Load() == 0 {
		t.Fatalf("no flood connection was refused with 503: the flood never reached the descriptor limit (%d dialed)", floodDials)
	}
	m, err := g.metrics()
	if err != nil {
		t.Fatal(err)
	}
	shed, ok := m["wsgate_connections_shed_total"]
	if !ok {
		t.Fatal("/metrics has no wsgate_connections_shed_total")
	}
	if shed < float64(tally.shed503.Load()) {
		t.Errorf("wsgate_connections_shed_total %.0f < %d flood connections that read a 503", shed, tally.shed503.Load())
	}
	t.Logf("flood (%s): RLIMIT_NOFILE %d; %d connections dialed in %v (%d dial errors); "+
		"flood answers: %d shed 503, %d upgraded 101, %d closed without a byte, %d still open; "+
		"%d round trips ok; new clients: %d served, %d refused 503, %d reset; "+
		"wsgate_connections_shed_total %.0f, wsgate_accept_errors_total %.0f; process alive",
		size, floodLimit, floodDials, floodTook.Round(time.Millisecond), tally.dialErrors.Load(),
		tally.shed503.Load(), tally.upgraded101.Load(), tally.closedSilently.Load(), tally.stillOpen.Load(),
		roundTrips, served, refused, resets, shed, m["wsgate_accept_errors_total"])
}

// newClientServed connects a new client and has it join a room and get a
// pong back. ok is true when all of that worked; otherwise status is the
// HTTP status of a refused upgrade (0 if none) and err says what failed.
func newClientServed(t *testing.T, addr, user string) (ok bool, status int, err error) {
	c, status, err := dialClient(t, addr, user, 64)
	if err != nil {
		return false, status, err
	}
	defer c.conn.Close()
	if err := c.join("lobby-" + user); err != nil {
		return false, 0, err
	}
	if err := c.send(map[string]any{"type": "ping", "id": "p"}); err != nil {
		return false, 0, err
	}
	for {
		m, err := c.next(5 * time.Second)
		if err != nil {
			return false, 0, err
		}
		if m.Type == "pong" {
			return true, 0, nil
		}
	}
}

// hasOpenFileLimit reports whether a /proc/<pid>/limits text has soft and
// hard "Max open files" equal to n.
func hasOpenFileLimit(limits string, n int) bool {
	for _, line := range strings.Split(limits, "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			return len(f) >= 2 && f[0] == strconv.Itoa(n) && f[1] == strconv.Itoa(n)
		}
	}
	return false
}
