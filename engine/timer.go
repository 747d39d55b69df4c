package engine

// wheelSlots is the number of slots of a loop's timing wheel. With the default
// 100ms tick it spans 409.6s, longer than every default deadline; a deadline
// further out is parked in the farthest slot and re-armed when it comes up.
const wheelSlots = 4096

// timingWheel holds every connection of one loop that has a deadline, in O(1)
// per arm, disarm and expiry: no timer and no goroutine per connection. Each
// connection is in at most one slot, linked through its own wheelNext/wheelPrev
// fields, so the wheel allocates nothing after start. Deadlines are lazy: a
// connection records activity as a tick number, and only when its slot comes up
// does the loop decide whether something is really due (see Conn.onDeadline).
//
// Owned by the loop's goroutine; never touched from anywhere else.
type timingWheel struct {
	slots [wheelSlots]*Conn
	now   uint32 // current tick; advanced only by advance
}

// arm schedules c to be visited at tick at (clamped to the wheel's span).
func (w *timingWheel) arm(c *Conn, at uint32) {
	if c.wheelSlot >= 0 {
		w.disarm(c)
	}
	if d := at - w.now; int32(d) <= 0 {
		at = w.now + 1
	} else if d >= wheelSlots {
		at = w.now + wheelSlots - 1
	}
	slot := int32(at % wheelSlots)
	c.wheelAt = at
	c.wheelSlot = slot
	c.wheelPrev = nil
	c.wheelNext = w.slots[slot]
	if c.wheelNext != nil {
		c.wheelNext.wheelPrev = c
	}
	w.slots[slot] = c
}

// disarm removes c from the wheel; a no-op when it is not armed.
func (w *timingWheel) disarm(c *Conn) {
	if c.wheelSlot < 0 {
		return
	}
	if c.wheelPrev != nil {
		c.wheelPrev.wheelNext = c.wheelNext
	} else {
		w.slots[c.wheelSlot] = c.wheelNext
	}
	if c.wheelNext != nil {
		c.wheelNext.wheelPrev = c.wheelPrev
	}
	c.wheelNext, c.wheelPrev, c.wheelSlot = nil, nil, -1
}

// advance moves the wheel to tick to, calling expire for every connection
// whose tick has come. expire may re-arm the connection or close it.
func (w *timingWheel) advance(to uint32, expire func(*Conn)) {
	for int32(to-w.now) > 0 {
		w.now++
		slot := w.now % wheelSlots
		// Take the head each time rather than following a saved next
		// pointer: expire may disarm or re-arm any connection, others of
		// this slot included. Every connection in the slot is due now (arm
		// keeps deadlines within one lap), and arm never files into the
		// current tick's slot, so the loop ends.
		for c := w.slots[slot]; c != nil; c = w.slots[slot] {
			w.disarm(c)
			expire(c)
		}
	}
}
