package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/gobwas/ws"
)

// Close codes the gateway sends (PROTOCOL.md section 4).
const (
	CloseNormal        ws.StatusCode = 1000
	CloseGoingAway     ws.StatusCode = 1001
	CloseProtocolError ws.StatusCode = 1002
	CloseInvalidUTF8   ws.StatusCode = 1007
	ClosePolicy        ws.StatusCode = 1008
	CloseTooLarge      ws.StatusCode = 1009
	CloseInternal      ws.StatusCode = 1011
	CloseServerFull    ws.StatusCode = 1013
	CloseAuthTimeout   ws.StatusCode = 4008
	CloseSlowConsumer  ws.StatusCode = 4009
	CloseIdle          ws.StatusCode = 4010
	CloseTokenExpired  ws.StatusCode = 4011 // the token expired and no refresh came within the grace (PROTOCOL.md section 9)
	CloseAuthFailed    ws.StatusCode = 4501
	closeAbnormal      ws.StatusCode = 1006
)

// CloseCodes lists the codes counted one by one in LoopStats.Closes; the last
// slot counts every other code.
var CloseCodes = [...]ws.StatusCode{1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4008, 4009, 4010, 4011, 4012, 4501, 4502, 4503}

func closeIndex(code ws.StatusCode) int {
	for i, c := range CloseCodes {
		if c == code {
			return i
		}
	}
	return len(CloseCodes)
}

// RefusalStatuses lists the HTTP statuses counted in LoopStats.Refusals; the
// last slot counts any other status.
var RefusalStatuses = [...]int{400, 401, 403, 404, 426, 431, 503}

func refusalIndex(status int) int {
	for i, s := range RefusalStatuses {
		if s == status {
			return i
		}
	}
	return len(RefusalStatuses)
}

// LoopStats are one loop's counters. The loop increments plain fields (no
// atomics on the hot path); Engine.Stats copies them on the loop itself, or
// takes the copy the loop published at its last tick, so readers never race
// with it and never wait long for a busy loop.
type LoopStats struct {
	States            [numStates]int64
	Upgrades          uint64
	Refusals          [len(RefusalStatuses) + 1]uint64
	Closes            [len(CloseCodes) + 1]uint64 // close frames sent by the gateway
	ClosesReceived    uint64                      // close frames received from clients
	HandshakeTimeouts uint64
	SlowConsumers     uint64
	MessagesIn        uint64
	BytesIn           uint64
	BytesOut          uint64
	PingsSent         uint64
}

// Add folds o into s.
func (s *LoopStats) Add(o *LoopStats) {
	for i := range s.States {
		s.States[i] += o.States[i]
	}
	for i := range s.Refusals {
		s.Refusals[i] += o.Refusals[i]
	}
	for i := range s.Closes {
		s.Closes[i] += o.Closes[i]
	}
	s.Upgrades += o.Upgrades
	s.ClosesReceived += o.ClosesReceived
	s.HandshakeTimeouts += o.HandshakeTimeouts
	s.SlowConsumers += o.SlowConsumers
	s.MessagesIn += o.MessagesIn
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.PingsSent += o.PingsSent
}

// CloseCount returns how many close frames with code the gateway sent.
func (s *LoopStats) CloseCount(code ws.StatusCode) uint64 { return s.Closes[closeIndex(code)] }

// RefusalCount returns how many upgrades were refused with status.
func (s *LoopStats) RefusalCount(status int) uint64 { return s.Refusals[refusalIndex(status)] }

// statsFreshWait is how long Stats waits for a loop to copy its counters
// before it settles for the copy of the loop's last tick.
const statsFreshWait = 50 * time.Millisecond

// Stats returns each running loop's counters: copied on the loop itself when
// it answers within statsFreshWait, else the copy it published at its last
// tick (at most one tick old, or older while the loop is stuck in one task).
// It never fails for a busy loop; the error is only ctx's, when ctx ends
// before statsFreshWait.
func (e *Engine) Stats(ctx context.Context) ([]LoopStats, error) {
	fresh, cancel := context.WithTimeout(ctx, statsFreshWait)
	defer cancel()
	out, missing := collect(fresh, e.loops, func(l *Loop) LoopStats { return l.stats })
	if len(missing) > 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("engine: stats: %w", ctx.Err())
	}
	for _, i := range missing {
		out[i] = e.loops[i].published()
	}
	return out, nil
}

// CollectOrLast is Collect for readers that must not wait on a busy loop
// (metrics scrapes): a loop that does not answer within statsFreshWait
// contributes last(l) instead, a copy the loop published earlier (at its
// last tick, see TickHandler). last runs on the caller's goroutine and must
// be safe there. The error is only ctx's, when ctx ends before
// statsFreshWait.
func CollectOrLast[T any](ctx context.Context, loops []*Loop, read, last func(*Loop) T) ([]T, error) {
	fresh, cancel := context.WithTimeout(ctx, statsFreshWait)
	defer cancel()
	out, missing := collect(fresh, loops, read)
	if len(missing) > 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("engine: collect: %w", ctx.Err())
	}
	for _, i := range missing {
		out[i] = last(loops[i])
	}
	return out, nil
}

// Collect runs read on every running loop (through Post, so read may look at
// loop-owned state without a race) and returns the results indexed like
// loops; a loop that is not running leaves its zero value. It waits at most
// until ctx is done, then fails naming the first loop that did not answer.
// For metrics and tests, not for hot paths; Engine.Stats does not wait on a
// busy loop.
func Collect[T any](ctx context.Context, loops []*Loop, read func(*Loop) T) ([]T, error) {
	out, missing := collect(ctx, loops, read)
	if len(missing) > 0 {
		return nil, fmt.Errorf("engine: collect from loop %d: %w", missing[0], ctx.Err())
	}
	return out, nil
}

// collect is Collect returning the indexes of the loops that did not answer
// before ctx ended. Their tasks still run later, on results nobody reads.
func collect[T any](ctx context.Context, loops []*Loop, read func(*Loop) T) (out []T, missing []int) {
	type result struct {
		v    T
		done chan struct{}
	}
	out = make([]T, len(loops))
	pending := make([]*result, len(loops))
	for i, l := range loops {
		res := &result{done: make(chan struct{})}
		if l.Post(Task{Fn: func(l *Loop, arg any) {
			r := arg.(*result)
			r.v = read(l)
			close(r.done)
		}, Arg: res}) {
			pending[i] = res
		}
	}
	for i, res := range pending {
		if res == nil {
			continue
		}
		select {
		case <-res.done:
			out[i] = res.v
		case <-ctx.Done():
			select {
			case <-res.done:
				out[i] = res.v
			default:
				missing = append(missing, i)
			}
		}
	}
	return out, missing
}
