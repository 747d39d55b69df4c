package engine

import (
	"context"
	"fmt"

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
	CloseAuthFailed    ws.StatusCode = 4501
	closeAbnormal      ws.StatusCode = 1006
)

// CloseCodes lists the codes counted one by one in LoopStats.Closes; the last
// slot counts every other code.
var CloseCodes = [...]ws.StatusCode{1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4008, 4009, 4010, 4501}

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
// atomics on the hot path); Engine.Stats copies them on the loop itself, so
// readers never race with it.
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

// Stats returns each running loop's counters, copied on the loop itself.
func (e *Engine) Stats(ctx context.Context) ([]LoopStats, error) {
	return Collect(ctx, e.loops, func(l *Loop) LoopStats { return l.stats })
}

// Collect runs read on every running loop (through Post, so read may look at
// loop-owned state without a race) and returns the results indexed like
// loops; a loop that is not running leaves its zero value. It waits at most
// until ctx is done. For metrics and tests, not for hot paths.
func Collect[T any](ctx context.Context, loops []*Loop, read func(*Loop) T) ([]T, error) {
	type result struct {
		v    T
		done chan struct{}
	}
	out := make([]T, len(loops))
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
			return nil, fmt.Errorf("engine: collect from loop %d: %w", i, ctx.Err())
		}
	}
	return out, nil
}
