package engine

import (
	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/frame"
)

// EchoHandler is the -echo mode of PROTOCOL.md section 1: every text or
// binary message goes back unchanged. It exists for conformance suites and
// raw-throughput benchmarks and runs through the same engine and codec as
// the router.
type EchoHandler struct{ BaseHandler }

// OnMessage echoes the message to its sender.
func (EchoHandler) OnMessage(c *Conn, op ws.OpCode, payload []byte) { c.WriteMessage(op, payload) }

// BroadcastHandler is raw broadcast (-broadcast): every message goes,
// unchanged, to every other open connection on every loop. The frame is
// encoded once; each other loop gets one handoff per message, not one per
// receiver, handed over with the loop's other hand-offs once per iteration. It is the baseline the router's room fan-out is measured against.
type BroadcastHandler struct{ BaseHandler }

// OnMessage fans the message out.
func (BroadcastHandler) OnMessage(c *Conn, op ws.OpCode, payload []byte) {
	s := frame.NewShared(op, payload)
	own := c.Loop()
	for _, l := range own.Engine().Loops() {
		if l == own || !l.Running() {
			continue
		}
		s.Retain()
		if !own.Handoff(l, Task{Fn: broadcastTask, Arg: s}) {
			s.Release()
		}
	}
	for _, other := range own.Conns() {
		if other != c && other.State() != StateConnecting {
			other.WriteShared(s)
		}
	}
	s.Release()
}

// broadcastTask delivers a shared frame to every upgraded connection of l.
func broadcastTask(l *Loop, arg any) {
	s := arg.(*frame.Shared)
	for _, c := range l.Conns() {
		if c.State() != StateConnecting {
			c.WriteShared(s)
		}
	}
	s.Release()
}
