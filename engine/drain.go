package engine

// SetDraining turns drain mode on or off. While draining, every new upgrade
// request is refused with 503 and the connection closed (PROTOCOL.md section
// 7: the gateway stops accepting); open connections are not touched. Safe
// from any goroutine.
func (e *Engine) SetDraining(on bool) { e.draining.Store(on) }

// Draining reports whether drain mode is on.
func (e *Engine) Draining() bool { return e.draining.Load() }
