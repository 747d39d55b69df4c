package natsbp

// # Sync: "everything so far has taken effect"
//
// A client switching connections (make-before-break) counts on its old
// connection until the new one is confirmed, then closes the old one. The
// router makes that safe with Sync (router.Syncer): it answers auth, join
// and subscribe, and a client's close frame, only after a sync round that
// started after the change. A round, on the sync goroutine:
//
//  1. waits until every Interest call made before it is applied (the SUB or
//     UNSUB written to the connection: interestBarrier);
//  2. waits until every message Publish accepted before it is settled (a
//     marker through the publish queue, released after the batch before it
//     was confirmed or failed);
//  3. flushes: a PING/PONG round trip, so the server has processed the
//     SUBs of 1, and nats.go has put every message the server sent before
//     the PONG into the subscriptions' channel (it does that on its reader
//     goroutine, before it reads the PONG);
//  4. sends a sentinel through that channel, the pump and the receiver, so
//     every message before it has been handed to the router (posted to the
//     event loops) when the round ends.
//
// Then it calls every done function that was waiting when it started. A
// round that cannot finish (NATS down or stalled past ConfirmTimeout) ends
// early: the instance is then not ready, and its clients get the backplane
// gap once it is back (health.go), which covers what a round would have.

import (
	"time"

	"github.com/nats-io/nats.go"
)

// syncState is the sync goroutine's input.
type syncState struct {
	waiting []func() // under Backplane.mu
	kick    chan struct{}
}

// Sync calls done, from a backplane goroutine, once a sync round that
// started after this call has ended (see the top of this file). It never
// blocks; done must not block either.
func (b *Backplane) Sync(done func()) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		done()
		return
	}
	b.syncs.waiting = append(b.syncs.waiting, done)
	b.mu.Unlock()
	select {
	case b.syncs.kick <- struct{}{}:
	default:
	}
}

// syncLoop runs sync rounds for whoever is waiting.
func (b *Backplane) syncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			b.mu.Lock()
			waiting := b.syncs.waiting
			b.syncs.waiting = nil
			b.mu.Unlock()
			for _, done := range waiting {
				done()
			}
			return
		case <-b.syncs.kick:
		}
		b.mu.Lock()
		waiting := b.syncs.waiting
		b.syncs.waiting = nil
		b.mu.Unlock()
		if len(waiting) == 0 {
			continue
		}
		b.syncRound()
		for _, done := range waiting {
			done()
		}
	}
}

// syncRound runs steps 1-4; it gives up after ConfirmTimeout.
func (b *Backplane) syncRound() {
	deadline := time.NewTimer(b.opts.ConfirmTimeout)
	defer deadline.Stop()
	wait := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-deadline.C:
		case <-b.done:
		}
		return false
	}
	start := time.Now()
	if !wait(b.interestBarrier()) || !b.ready.Load() {
		return
	}
	marker := make(chan struct{})
	select {
	case b.pubq <- outbound{marker: marker}:
	case <-deadline.C:
		return
	case <-b.closing:
		return
	}
	if !wait(marker) {
		return
	}
	if err := b.nc.FlushTimeout(b.opts.ConfirmTimeout - time.Since(start)); err != nil {
		return
	}
	sentinel := &nats.Msg{}
	b.rx.sentinel.Store(sentinel)
	select {
	case b.inbox <- sentinel:
	case <-deadline.C:
		return
	case <-b.done:
		return
	}
	for {
		select {
		case got := <-b.rx.sentinelDone:
			if got == sentinel {
				return
			}
		case <-deadline.C:
			return
		case <-b.done:
			return
		}
	}
}
