package harness

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

func TestSeqSetCountsEachSeqOnce(t *testing.T) {
	var s seqSet
	stream := func(w, l uint64) uint64 { return w<<48 | l<<40 }
	seqs := []uint64{stream(0, 0) | 200, stream(0, 0) | 201, stream(1, 3) | 200, stream(0, 0) | 5, stream(0, 0) | 100000}
	for _, q := range seqs {
		if !s.add(q) {
			t.Fatalf("seq %x reported as seen on first delivery", q)
		}
	}
	for _, q := range seqs {
		if s.add(q) {
			t.Fatalf("seq %x not reported as a duplicate", q)
		}
	}
	if s.add(stream(0, 0)|6) == false || s.add(stream(0, 0)|199) == false {
		t.Fatal("a new seq between seen ones reported as seen")
	}
	s.reset()
	if !s.add(seqs[0]) {
		t.Fatal("reset did not forget")
	}
}

// dupLossServer echoes measured messages but sends every 5th one twice and
// drops every 7th one (per connection): the counts must show both.
func dupLossServer(t *testing.T, dups, drops *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for n := 1; ; n++ {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			copies := 1
			switch {
			case n%7 == 0:
				copies = 0
				drops.Add(1)
			case n%5 == 0:
				copies = 2
				dups.Add(1)
			}
			for range copies {
				if c.WriteMessage(mt, p) != nil {
					return
				}
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestEchoCountsDuplicatesAndLosses(t *testing.T) {
	var dups, drops atomic.Int64
	addr := dupLossServer(t, &dups, &drops)
	e := testEnv(t, fmt.Sprintf("dup=ws://%s/ws#%d", addr, os.Getpid()))
	r := runOne(t, e, "echo", "-conns", "4", "-rate", "200", "-duration", "1s", "-warmup", "200ms", "-drain", "1s")
	if r.Sent < 150 || r.Expected != r.Sent {
		t.Fatalf("sent %d expected %d", r.Sent, r.Expected)
	}
	// the window's share of the server's doubles and drops is not known
	// exactly (warmup), but each must show and unique deliveries never
	// exceed what was sent
	if r.Duplicates == 0 || r.Duplicates > dups.Load() {
		t.Fatalf("duplicates %d, server doubled %d", r.Duplicates, dups.Load())
	}
	if r.Received > r.Sent {
		t.Fatalf("received %d > sent %d: duplicates counted as deliveries", r.Received, r.Sent)
	}
	if r.Lost <= 0 || r.Lost > drops.Load() || r.Received+r.Lost != r.Expected {
		t.Fatalf("lost %d (server dropped %d), received %d expected %d", r.Lost, drops.Load(), r.Received, r.Expected)
	}
	if r.Latency == nil || r.Latency.Count != uint64(r.Received) {
		t.Fatalf("latency count %+v, want %d (unique deliveries)", r.Latency, r.Received)
	}
}

// Both nbio peers deliver every broadcast frame exactly once to every other
// connection: the batching hub (several publishers, frames of a receiver's
// own left out) and the earlier RWMutex hub.
func TestNbioPeersBroadcastExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the nbio peer")
	}
	for _, target := range []string{"nbio", "nbio-pool"} {
		t.Run(target, func(t *testing.T) {
			e := testEnv(t, target)
			r := runOne(t, e, "broadcast", "-receivers", "5", "-publishers", "3", "-rate", "300", "-duration", "1s", "-warmup", "200ms", "-drain", "3s")
			if r.Expected != r.Sent*7 || r.Received != r.Expected || r.Lost != 0 || r.Duplicates != 0 {
				t.Fatalf("sent %d expected %d received %d lost %d dups %d notes %v", r.Sent, r.Expected, r.Received, r.Lost, r.Duplicates, r.Notes)
			}
		})
	}
}
