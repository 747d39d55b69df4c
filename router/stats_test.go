package router

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/engine"
)

// Snapshot (what /metrics reads) must answer while a loop is stuck in a long
// task, with the counters of the loop's last tick, instead of failing the
// scrape after its timeout.
func TestSnapshotDoesNotWaitForBusyLoop(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 1, TickInterval: 10 * time.Millisecond}, Options{})
	a, b := g.user("alice"), g.user("bob")
	defer a.close()
	defer b.close()
	a.join("lobby")
	b.join("lobby")
	a.send(`{"type":"message","room":"lobby","data":"hi"}`)
	b.expectDelivery("room", "lobby", "alice")
	sh := g.router.shards[0]
	eventually(t, "a tick to publish the delivery", func() bool {
		return sh.published().Stats.Deliveries >= 1
	})

	release := make(chan struct{})
	defer close(release)
	var blocked atomic.Bool
	g.eng.Loops()[0].Post(engine.Task{Fn: func(*engine.Loop, any) { blocked.Store(true); <-release }})
	eventually(t, "the loop to block", blocked.Load)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snaps, err := g.router.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot with a busy loop: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Snapshot returned only when its context ended")
	}
	if snaps[0].Stats.Deliveries < 1 {
		t.Fatalf("snapshot of the busy loop: %+v", snaps[0].Stats)
	}
}
