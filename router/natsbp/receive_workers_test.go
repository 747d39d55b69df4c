package natsbp

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// TestReceiveWorkersKeepOrderPerAddress: a large batch is decoded on
// several goroutines at once, and every room still gets its messages in
// publish order, none lost. The first delivery is held until the whole
// burst is queued, so the rest arrives as one batch, which is spread.
func TestReceiveWorkersKeepOrderPerAddress(t *testing.T) {
	const rooms, perRoom = 8, 500
	ns := startNATS(t, 0)
	var (
		mu       sync.Mutex
		next     = map[string]int{}
		bad      []string
		gate     = make(chan struct{})
		gateOnce sync.Once
		total    int
		finished = make(chan struct{})
	)
	bp := New(Options{URLs: []string{ns.ClientURL()}, ReceiveWorkers: 4, Logger: quietLogger()})
	err := bp.Start("a", router.Host{
		Deliver: func(rm *router.Remote) {
			gateOnce.Do(func() { <-gate })
			n, err := strconv.Atoi(string(rm.Data))
			mu.Lock()
			defer mu.Unlock()
			if err != nil || rm.Dropped != 0 || n != next[rm.Name] {
				bad = append(bad, rm.Name+": got "+string(rm.Data)+", want "+strconv.Itoa(next[rm.Name]))
			}
			next[rm.Name] = n + 1
			if total++; total == rooms*perRoom {
				close(finished)
			}
		},
		HasLocal:  func(kind router.Kind, name string) bool { return kind == router.KindRoom },
		EachLocal: func(fn func(router.Kind, string)) {},
		Resumed:   func() {},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bp.Close() })
	for r := range rooms {
		bp.Interest(router.KindRoom, "r"+strconv.Itoa(r))
	}
	waitFor(t, "subscriptions", func() bool { return bp.Stats().Subscriptions == rooms+1 })

	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for i := range perRoom {
		for r := range rooms {
			if err := svc.Publish("gw.room.r"+strconv.Itoa(r), []byte(`{"data":`+strconv.Itoa(i)+`}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the burst queued", func() bool { return bp.rx.pumped.Load() == rooms*perRoom })
	close(gate)
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		mu.Lock()
		t.Fatalf("delivered %d of %d", total, rooms*perRoom)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d out of order, first: %s", len(bad), bad[0])
	}
	if bp.rx.spread.Load() == 0 {
		t.Fatal("no batch was spread over the workers: the test did not test concurrent decoding")
	}
	if s := bp.Stats(); s.Dropped != 0 || s.DecodeErrors != 0 {
		t.Fatalf("dropped %d, decode errors %d", s.Dropped, s.DecodeErrors)
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
