package engine

import (
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/frame"
)

// State is a connection's lifecycle state (PROTOCOL.md section 7).
type State uint8

const (
	StateConnecting     State = iota // TCP accepted, upgrade pending
	StateAuthenticating              // upgraded, waiting for a token (router)
	StateActive                      // exchanging messages
	StateIdle                        // no data message for a ping interval
	StateClosing                     // close frame sent or received
	StateClosed                      // gone from the loop's tables
	numStates
)

var stateNames = [numStates]string{"connecting", "authenticating", "active", "idle", "closing", "closed"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "unknown"
}

// connection flags
const (
	flagDirty           uint8 = 1 << iota // on the loop's dirty list
	flagDeflate                           // permessage-deflate negotiated
	flagHuffman                           // client limited our window: Huffman-only compression
	flagBacklogged                        // above the high-water mark, on the loop's backlog list
	flagCloseSent                         // our close frame is queued
	flagCloseAfterFlush                   // close the TCP connection once the cork is written
	flagAuthDeadline                      // authDeadline is armed
)

// Conn is one client connection. Every method is for the owning event loop
// only (from Handler callbacks or from a Task posted to c.Loop()); other
// goroutines hand work over with Loop.Post.
type Conn struct {
	// Immutable after OnOpen.
	gc   gnet.Conn
	loop *Loop
	id   uint64

	// Owned by the event loop.
	dec          frame.Decoder
	cork         *bytebufferpool.ByteBuffer // frames queued in this loop iteration
	app          any                        // the handler's per-connection state
	dirtyNext    *Conn
	wheelNext    *Conn
	wheelPrev    *Conn
	wheelSlot    int32
	wheelAt      uint32
	lastFrame    uint32        // tick of the last inbound frame of any kind
	lastMessage  uint32        // tick of the last inbound data message
	pingSent     uint32        // tick of the outstanding ping, 0 when none
	authDeadline uint32        // tick by which the handler must call SetState(StateActive)
	index        int32         // position in loop.conns
	closeCode    ws.StatusCode // first close code sent or received, for OnClose
	state        State
	flags        uint8
}

// ID is unique among this engine's connections for its lifetime.
func (c *Conn) ID() uint64 { return c.id }

// Loop is the event loop that owns c.
func (c *Conn) Loop() *Loop { return c.loop }

// App returns the handler's per-connection state.
func (c *Conn) App() any { return c.app }

// SetApp attaches the handler's per-connection state.
func (c *Conn) SetApp(v any) { c.app = v }

// State is the lifecycle state.
func (c *Conn) State() State { return c.state }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.flags&flagDeflate != 0 }

func (c *Conn) remoteAddr() string {
	if a := c.gc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// RemoteAddr is the peer's address as "ip:port".
func (c *Conn) RemoteAddr() string { return c.remoteAddr() }

// SetState moves an upgraded connection between authenticating, active and
// idle; closing and closed are reached through Close.
func (c *Conn) SetState(s State) {
	if c.state >= StateClosing || s >= StateClosing || s == c.state {
		return
	}
	c.loop.stats.States[c.state]--
	c.loop.stats.States[s]++
	c.state = s
	if s != StateAuthenticating && c.flags&flagAuthDeadline != 0 {
		c.flags &^= flagAuthDeadline
	}
}

// RequireAuthWithin puts the connection in StateAuthenticating and closes it
// with 4008 unless SetState(StateActive) happens within ticks timing-wheel
// ticks (Engine.Ticks converts a duration).
func (c *Conn) RequireAuthWithin(ticks uint32) {
	c.SetState(StateAuthenticating)
	c.authDeadline = c.loop.wheel.now + ticks
	c.flags |= flagAuthDeadline
	c.rearm()
}

// Queued is the number of outbound bytes not yet accepted by the kernel:
// what is corked in this iteration plus gnet's outbound buffer. Flow control
// builds on it.
func (c *Conn) Queued() int {
	n := c.gc.OutboundBuffered()
	if c.cork != nil {
		n += len(c.cork.B)
	}
	return n
}

// Backlogged reports whether c is above the high-water mark and has not yet
// drained below the low-water mark.
func (c *Conn) Backlogged() bool { return c.flags&flagBacklogged != 0 }

// WriteMessage encodes one text or binary message (compressed when
// negotiated) and queues it.
func (c *Conn) WriteMessage(op ws.OpCode, payload []byte) {
	if c.flags&flagCloseSent != 0 {
		return
	}
	cork := c.corkBuf()
	if c.flags&flagDeflate != 0 && len(payload) >= c.loop.eng.compressMin {
		var err error
		var out []byte
		if c.flags&flagHuffman != 0 {
			out, err = frame.AppendDeflatedHuffman(cork.B, op, payload)
		} else {
			out, err = frame.AppendDeflated(cork.B, op, payload)
		}
		if err == nil {
			cork.B = out
			c.markDirty()
			return
		}
	}
	cork.B = frame.AppendFrame(cork.B, op, payload)
	c.markDirty()
}

// WriteShared queues a frame encoded once for many connections, picking the
// encoding this connection negotiated. The caller keeps its reference.
func (c *Conn) WriteShared(s *frame.Shared) {
	if c.flags&flagCloseSent != 0 {
		return
	}
	b := s.Bytes()
	if c.flags&flagDeflate != 0 && len(b) >= c.loop.eng.compressMin {
		var err error
		var z []byte
		if c.flags&flagHuffman != 0 {
			z, err = s.DeflatedHuffman()
		} else {
			z, err = s.Deflated()
		}
		if err == nil {
			b = z
		}
	}
	c.write(b)
}

// WriteRaw queues bytes that are already one or more complete frames.
func (c *Conn) WriteRaw(b []byte) {
	if c.flags&flagCloseSent != 0 {
		return
	}
	c.write(b)
}

func (c *Conn) write(b []byte) {
	cork := c.corkBuf()
	cork.B = append(cork.B, b...)
	c.markDirty()
}

func (c *Conn) corkBuf() *bytebufferpool.ByteBuffer {
	if c.cork == nil {
		c.cork = c.loop.getCork()
	}
	return c.cork
}

func (c *Conn) markDirty() {
	if c.flags&flagDirty == 0 {
		c.flags |= flagDirty
		c.dirtyNext = c.loop.dirty
		c.loop.dirty = c
	}
}

// flush hands the corked bytes to gnet in one write and applies the
// outbound limits. Called by the loop only (Loop.flushDirty).
func (c *Conn) flush() {
	c.flags &^= flagDirty
	c.dirtyNext = nil
	if c.cork == nil {
		return
	}
	if c.state != StateClosed && len(c.cork.B) > 0 {
		_, _ = c.gc.Write(c.cork.B)
		c.loop.stats.BytesOut += uint64(len(c.cork.B))
	}
	c.loop.putCork(c.cork)
	c.cork = nil
	if c.state == StateClosed {
		return
	}
	if c.flags&flagCloseAfterFlush != 0 {
		c.finishClose()
		return
	}
	c.checkQueue()
}

// checkQueue applies the slow-consumer limit and the water marks.
func (c *Conn) checkQueue() {
	q := c.gc.OutboundBuffered()
	opts := &c.loop.eng.opts
	switch {
	case q > opts.MaxQueueBytes:
		c.loop.stats.SlowConsumers++
		c.abort(CloseSlowConsumer, "slow consumer")
	case q > opts.WriteHighWater && c.flags&flagBacklogged == 0:
		c.flags |= flagBacklogged
		c.loop.backlog = append(c.loop.backlog, c)
	}
}

// Close starts the closing handshake: a close frame with code and reason
// goes out, further writes are dropped, and the TCP connection is closed when
// the client answers or after CloseTimeout.
func (c *Conn) Close(code ws.StatusCode, reason string) {
	if c.state >= StateClosing || c.state == StateConnecting {
		if c.state == StateConnecting {
			c.closeAfterFlush()
		}
		return
	}
	c.sendClose(code, reason)
	c.loop.stats.Closes[closeIndex(code)]++
	c.setClosing()
	c.rearm()
}

// abort sends a close frame and drops the connection right after it is
// written, without waiting for the client's answer: for protocol violations,
// slow consumers and timeouts, where waiting helps nobody.
func (c *Conn) abort(code ws.StatusCode, reason string) {
	if c.state == StateClosed {
		return
	}
	if c.flags&flagCloseSent == 0 && c.state != StateConnecting {
		c.sendClose(code, reason)
		c.loop.stats.Closes[closeIndex(code)]++
	}
	c.setClosing()
	c.closeAfterFlush()
}

func (c *Conn) sendClose(code ws.StatusCode, reason string) {
	cork := c.corkBuf()
	cork.B = frame.AppendClose(cork.B, code, reason)
	c.flags |= flagCloseSent
	if c.closeCode == 0 {
		c.closeCode = code
	}
	c.markDirty()
}

func (c *Conn) setClosing() {
	if c.state < StateClosing {
		c.loop.stats.States[c.state]--
		c.loop.stats.States[StateClosing]++
		c.state = StateClosing
	}
}

// closeAfterFlush closes the TCP connection once the cork is written (now,
// if nothing is corked).
func (c *Conn) closeAfterFlush() {
	c.flags |= flagCloseAfterFlush
	if c.flags&flagDirty == 0 {
		c.finishClose()
	}
}

// finishClose half-closes when everything was written (so the client sees our
// close frame before the FIN rather than an RST), then closes.
func (c *Conn) finishClose() {
	if c.state == StateClosed {
		return
	}
	if c.gc.OutboundBuffered() == 0 {
		_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
	}
	_ = c.gc.Close()
}

func (c *Conn) enableDeflate(p wsflate.Parameters) {
	c.flags |= flagDeflate
	if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15 {
		c.flags |= flagHuffman
	}
	c.dec.EnableDeflate(p)
}

// rearm puts c on the timing wheel at its next deadline.
func (c *Conn) rearm() {
	w := &c.loop.wheel
	opts := &c.loop.eng.ticks
	var at uint32
	switch {
	case c.state == StateConnecting:
		at = c.lastFrame + opts.handshake
	case c.state == StateClosing:
		at = w.now + opts.close
	default:
		at = ^uint32(0)
		earliest := func(t uint32) {
			if int32(t-w.now) < int32(at-w.now) || at == ^uint32(0) {
				at = t
			}
		}
		if c.pingSent != 0 {
			earliest(c.pingSent + opts.pingTimeout)
		} else if opts.ping != 0 {
			earliest(c.lastFrame + opts.ping)
		}
		if opts.idle != 0 {
			earliest(c.lastMessage + opts.idle)
		}
		if c.flags&flagAuthDeadline != 0 {
			earliest(c.authDeadline)
		}
		if at == ^uint32(0) {
			w.disarm(c)
			return
		}
	}
	w.arm(c, at)
}

// onDeadline runs when c's wheel slot comes up: it works out what is really
// due (activity moves deadlines lazily) and acts or re-arms.
func (c *Conn) onDeadline() {
	now := c.loop.wheel.now
	t := &c.loop.eng.ticks
	due := func(at uint32) bool { return int32(now-at) >= 0 }
	switch c.state {
	case StateConnecting:
		if due(c.lastFrame + t.handshake) {
			c.loop.stats.HandshakeTimeouts++
			c.closeAfterFlush()
			return
		}
	case StateClosing:
		c.finishClose()
		return
	case StateClosed:
		return
	default:
		if c.flags&flagAuthDeadline != 0 && due(c.authDeadline) {
			c.abort(CloseAuthTimeout, "authentication timeout")
			return
		}
		if t.idle != 0 && due(c.lastMessage+t.idle) {
			c.abort(CloseIdle, "idle timeout")
			return
		}
		if c.pingSent != 0 && due(c.pingSent+t.pingTimeout) {
			c.abort(CloseIdle, "ping timeout")
			return
		}
		if c.pingSent == 0 && t.ping != 0 && due(c.lastFrame+t.ping) {
			c.pingSent = now
			if c.pingSent == 0 {
				c.pingSent = 1
			}
			if c.state == StateActive {
				c.SetState(StateIdle)
			}
			c.loop.stats.PingsSent++
			c.write(pingFrame)
		}
	}
	c.rearm()
}

var pingFrame = frame.AppendFrame(nil, ws.OpPing, nil)
