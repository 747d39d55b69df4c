package router

import (
	"time"

	"github.com/wsgate/wsgate/engine"
)

// SendReconnect queues `{"type":"reconnect","after_ms":N}` (PROTOCOL.md
// section 7) on c in its codec, ahead of a shutdown close. Call it on c's
// loop only (from a Task posted to c.Loop()). It reports false when c is not
// a router connection or is already closing.
func (r *Router) SendReconnect(c *engine.Conn, after time.Duration) bool {
	cl, ok := c.App().(*client)
	if !ok || c.State() >= engine.StateClosing || c.State() == engine.StateConnecting {
		return false
	}
	s := cl.shard
	s.out = cl.codec.AppendReconnect(s.out[:0], after.Milliseconds())
	s.write(cl, s.out)
	return true
}
