package engine

import "time"

// AppDeadlineHandler is an optional Handler ability: a deadline of the
// handler's own (a token's expiry, say) kept on the loop's timing wheel next
// to the engine's, so that it costs a tick number per connection and no timer
// or goroutine.
type AppDeadlineHandler interface {
	// OnAppDeadline runs on the loop once the deadline set with
	// Conn.SetAppDeadline has come. The deadline is cleared first, so the
	// handler may set another or close the connection.
	OnAppDeadline(c *Conn)
}

// SetAppDeadline arms the handler's deadline at wall-clock time at (replacing
// one already armed): OnAppDeadline runs at the first tick that is not before
// at, so never early and at most one tick (plus the loop's lag) late. A
// connection that is closing ignores it.
func (c *Conn) SetAppDeadline(at time.Time) {
	if c.state >= StateClosing {
		return
	}
	c.appDeadline = c.loop.eng.tickAt(at)
	c.flags |= flagAppDeadline
	c.rearm()
}

// ClearAppDeadline disarms the handler's deadline; a no-op when none is set.
func (c *Conn) ClearAppDeadline() {
	if c.flags&flagAppDeadline == 0 {
		return
	}
	c.flags &^= flagAppDeadline
	if c.state < StateClosing {
		c.rearm()
	}
}

// maxAppDeadlineTicks caps how far ahead an app deadline is armed: tick
// numbers wrap, and comparisons between them hold within 2^31 ticks. A
// deadline further out fires early at the cap; the handler sees that it is
// not due yet (wall clock) and sets it again.
const maxAppDeadlineTicks = 1 << 30

// tickAt is the first tick whose start is not before at: ticks count from
// the engine's start, and tick n begins n ticks after it.
func (e *Engine) tickAt(at time.Time) uint32 {
	now := e.tickNow()
	d := at.Sub(e.start)
	if d <= 0 {
		return now
	}
	t := int64((d + e.opts.TickInterval - 1) / e.opts.TickInterval)
	if t-int64(now) > maxAppDeadlineTicks {
		return now + maxAppDeadlineTicks
	}
	return uint32(t)
}

// appDeadlineDue runs the handler's deadline when it has come; it reports
// whether the connection is still open for the other deadlines.
func (c *Conn) appDeadlineDue(now uint32) bool {
	if c.flags&flagAppDeadline == 0 || int32(now-c.appDeadline) < 0 {
		return true
	}
	c.flags &^= flagAppDeadline
	if h, ok := c.loop.eng.handler.(AppDeadlineHandler); ok {
		h.OnAppDeadline(c)
	}
	return c.state < StateClosing
}
