package engine

import (
	"testing"

	"github.com/gobwas/ws"
)

// farewellHandler echoes, and on every close tells the loop's other
// connections about it: a write made inside OnClose.
type farewellHandler struct{ EchoHandler }

func (farewellHandler) OnClose(c *Conn, _ ws.StatusCode) {
	for _, o := range c.Loop().Conns() {
		if o != c && o.State() != StateConnecting {
			o.WriteMessage(ws.OpText, []byte("gone"))
		}
	}
}

// TestOnCloseWritesLeaveWithIteration: what a handler writes in OnClose
// reaches its receiver without waiting for a tick. The clock is manual and
// never advanced, so on an engine that leaves those writes to the tick's
// flush the message never arrives and the read times out.
func TestOnCloseWritesLeaveWithIteration(t *testing.T) {
	opts := timerOpts()
	opts.Loops = 1 // both connections on one loop: the write is loop-local
	e := startManualEngine(t, opts, farewellHandler{})
	stay, _ := dialUpgraded(t, e)
	leave, _ := dialUpgraded(t, e)
	// Both are open on the loop once each echoed a message.
	stay.writeFrame(opText, []byte("a"))
	stay.expectMessage(opText, []byte("a"))
	leave.writeFrame(opText, []byte("b"))
	leave.expectMessage(opText, []byte("b"))
	_ = leave.conn.Close() // TCP close: OnClose runs from gnet, not from a read of stay
	stay.expectMessage(opText, []byte("gone"))
}
