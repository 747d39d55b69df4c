package engine

import (
	"math"

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
	flagDirty           uint16 = 1 << iota // on the loop's dirty list
	flagDeflate                            // permessage-deflate negotiated
	flagHuffman                            // client limited our window: Huffman-only compression
	flagBacklogged                         // above the high-water mark, on the loop's backlog list
	flagCloseSent                          // our close frame is queued
	flagCloseAfterFlush                    // close the TCP connection once the cork is written
	flagAuthDeadline                       // authDeadline is armed
	flagFull                               // cork passed the flush threshold: on the loop's full list
	flagDrainClose                         // close frame handed over: close TCP once gnet's buffer drained
	flagHTTPHead                           // the cork starts with an HTTP response, not a frame
	flagTCPClose                           // gnet was asked to close the socket
	flagCloseHeld                          // the client's close frame came; the handler holds back the answer (CloseHolder)
	flagAppDeadline                        // appDeadline is armed (AppDeadlineHandler)
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
	lastMessage  uint32        // tick of the last data message in either direction
	pingSent     uint32        // tick of the outstanding ping, 0 when none; before the upgrade, bytes of the head searched (headScanned)
	authDeadline uint32        // tick by which the handler must call SetState(StateActive)
	appDeadline  uint32        // tick of the handler's own deadline (appdeadline.go)
	index        int32         // position in loop.conns
	closeCode    ws.StatusCode // first close code sent or received, for OnClose
	state        State
	flags        uint16
	// partialHead is how many bytes at the start of the cork finish a
	// frame that a direct write of a shared frame (writeSharedDirect)
	// began: they must reach the kernel before anything else and are
	// never dropped. 0 otherwise; the cork then starts at a frame boundary.
	// 32 bits because a shared frame of the default -max-message-size
	// (64 KiB payload plus header) is already more than 16 bits count; the
	// struct stays in the 192-byte size class (TestConnSize).
	partialHead uint32
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
// the cork (bytes queued since the last flush, and whole frames held back
// while gnet's buffer is above the high-water mark) plus gnet's outbound
// buffer. The cork of a connection whose kernel takes everything stays
// below WriteBufferCap (it is flushed between tasks once it passes it), so
// past that, Queued is what the kernel refused. Flow control builds on it.
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
	c.lastMessage = c.loop.wheel.now // a data message out is activity (PROTOCOL.md section 7)
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
	c.lastMessage = c.loop.wheel.now
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
	if len(b) >= sharedDirectMin && c.writeSharedDirect(b) {
		return
	}
	c.write(b)
}

// sharedDirectMin is the smallest shared frame that WriteShared writes to
// the socket straight from the shared copy (writeSharedDirect) rather than
// copying it into the cork first. Below it the copy costs less than the
// extra system call it saves from coalescing.
const sharedDirectMin = 4 << 10

// writeSharedDirect writes the cork and the shared frame b with one writev
// while gnet holds nothing for c, so that b is not copied for every
// receiver. Only what the kernel refuses is copied into the cork, and it is
// then handed over exactly as a flushed cork would be (whole frames, see
// handOver): the rest of a frame the kernel took in part stays at the head
// of the cork (partialHead) and goes to gnet at the next flush, where no
// handler callback is running. It reports false, having done nothing, when
// the copy path must be taken: gnet holds bytes (order), the cork is not
// plain frames (an HTTP head, a partial head, a close pending), or the
// bytes are too many for partialHead to count (4 GiB).
func (c *Conn) writeSharedDirect(b []byte) bool {
	if c.state < StateAuthenticating || c.state > StateIdle ||
		c.flags&(flagHTTPHead|flagCloseAfterFlush|flagDrainClose|flagTCPClose) != 0 ||
		c.partialHead != 0 || c.gc.OutboundBuffered() != 0 {
		return false
	}
	var head []byte
	if c.cork != nil {
		head = c.cork.B
	}
	total := len(head) + len(b)
	if uint64(total) > math.MaxUint32 {
		return false
	}
	l := c.loop
	iov := l.iov[:0]
	if len(head) > 0 {
		iov = append(iov, head)
	}
	iov = append(iov, b)
	n, err := unix.Writev(c.gc.Fd(), iov)
	clear(l.iov[:])
	if err != nil && err != unix.EAGAIN {
		return false // the copy path's flush meets the error and lets gnet close
	}
	n = max(n, 0)
	l.stats.BytesOut += uint64(n)
	if n == total {
		c.dropCork()
		return true
	}
	// The kernel refused the rest: copy it into the cork, noting the rest
	// of a frame it took in part.
	var must int
	if n < len(head) {
		must = frameRest(head, n)
	} else {
		must = frameRest(b, n-len(head))
	}
	cork := c.corkBuf()
	if n < len(head) {
		rest := copy(cork.B, cork.B[n:])
		cork.B = append(cork.B[:rest], b...)
	} else {
		cork.B = append(cork.B[:0], b[n-len(head):]...)
	}
	c.partialHead = uint32(must)
	c.markDirty()
	return true
}

// WriteRaw queues bytes that are already one or more complete data frames
// (they count as activity, like WriteMessage).
func (c *Conn) WriteRaw(b []byte) {
	if c.flags&flagCloseSent != 0 {
		return
	}
	c.lastMessage = c.loop.wheel.now
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

// markDirty runs after every append to the cork: it puts c on the loop's
// dirty list (flushed after the current iteration), and on the full list
// (flushed after the current task) once the cork passes flushAt, so a
// burst leaves as it is produced rather than after the whole inbox ran.
func (c *Conn) markDirty() {
	l := c.loop
	if c.flags&flagDirty == 0 {
		c.flags |= flagDirty
		c.dirtyNext = l.dirty
		l.dirty = c
	}
	// Only while gnet holds nothing: otherwise the kernel is not taking
	// bytes anyway, and the loop's next settle hands them over.
	if len(c.cork.B) >= l.flushAt && c.flags&(flagFull|flagBacklogged) == 0 && c.gc.OutboundBuffered() == 0 {
		c.flags |= flagFull
		l.full = append(l.full, c)
	}
}

// flush hands the corked bytes to gnet (as far as its allowance goes, see
// handOver) and applies the outbound limits. It leaves list membership to
// its callers (Loop.flushDirty, Loop.flushFull, Engine.finishTraffic) and
// runs only between handler callbacks: a failed write closes the connection
// synchronously inside gnet, which calls Handler.OnClose.
func (c *Conn) flush() {
	if c.cork == nil {
		if c.flags&flagCloseAfterFlush != 0 {
			c.finishClose()
		}
		return
	}
	if c.state == StateClosed {
		c.dropCork()
		return
	}
	c.handOver()
	if c.state == StateClosed {
		return
	}
	if c.cork == nil && (c.flags&flagCloseAfterFlush != 0 ||
		c.flags&flagDrainClose != 0 && c.gc.OutboundBuffered() == 0) {
		c.finishClose()
		return
	}
	c.checkQueue()
}

func (c *Conn) dropCork() {
	c.partialHead = 0
	if c.cork != nil {
		c.loop.putCork(c.cork)
		c.cork = nil
	}
}

// handOver moves corked bytes towards the kernel. While gnet's outbound
// buffer is empty it writes to the socket itself, and gives gnet only what
// the kernel refused, cut after whole frames so that gnet holds at most about
// WriteHighWater; while gnet already holds bytes it tops that up to
// WriteHighWater with whole frames. Whatever is left stays in the cork, whole
// frames only, so that CloseSlowConsumer can drop it and send its close
// frame ahead of it: gnet has no way to drop bytes it holds. After a close
// frame, everything is handed over.
func (c *Conn) handOver() {
	cork := c.cork
	b := cork.B
	l := c.loop
	hw := l.eng.opts.WriteHighWater
	out := c.gc.OutboundBuffered()
	give := len(b)
	head := int(c.partialHead) // the rest of a frame begun by writeSharedDirect
	c.partialHead = 0
	switch {
	case c.flags&(flagCloseSent|flagHTTPHead) != 0:
		// everything: nothing after a close frame is ever dropped, and an
		// HTTP head is not a frame to cut at
		c.flags &^= flagHTTPHead
	case out == 0:
		n, err := unix.Write(c.gc.Fd(), b)
		if err != nil && err != unix.EAGAIN {
			break // gnet meets the same error on its own write and closes
		}
		n = max(n, 0)
		l.stats.BytesOut += uint64(n)
		b = b[n:]
		give = 0
		if len(b) > 0 {
			must := head - n
			if n >= head {
				must = frameRest(cork.B[head:], n-head)
			}
			give = frameCut(b, must, hw)
		}
	case out < hw:
		give = frameCut(b, head, hw-out)
	default:
		give = frameCut(b, head, 0)
	}
	if give > 0 {
		_, _ = c.gc.Write(b[:give])
		l.stats.BytesOut += uint64(give)
	}
	rest := len(b) - give
	switch {
	case rest == 0:
		c.dropCork()
	case c.state == StateClosed:
		c.dropCork()
	default:
		copy(cork.B, b[give:])
		cork.B = cork.B[:rest]
	}
}

// frameRest is how many bytes after offset at in b (which starts at a frame
// boundary) finish the frame that at falls in; 0 when at is a boundary.
func frameRest(b []byte, at int) int {
	pos := 0
	for pos < at {
		n := frameLen(b[pos:])
		if n <= 0 {
			return len(b) - at // not a frame we can read: give it all
		}
		pos += n
	}
	return pos - at
}

// frameCut returns how many bytes of b to hand over: must bytes (the rest of
// a partly written frame), then whole frames while they fit in allowance.
func frameCut(b []byte, must, allowance int) int {
	pos := must
	for pos < len(b) {
		n := frameLen(b[pos:])
		if n <= 0 {
			return len(b)
		}
		if pos+n > must+allowance {
			break
		}
		pos += n
	}
	return min(pos, len(b))
}

// frameLen is the length of the frame at the start of b (header and
// payload), or 0 when b does not hold a whole header.
func frameLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0
		}
		n, h = int(b[2])<<8|int(b[3]), 4
	case 127:
		if len(b) < 10 {
			return 0
		}
		var v uint64
		for _, x := range b[2:10] {
			v = v<<8 | uint64(x)
		}
		if v > 1<<40 {
			return 0
		}
		n, h = int(v), 10
	}
	if b[1]&0x80 != 0 {
		h += 4
	}
	return h + n
}

// checkQueue applies the slow-consumer limit and the water marks.
func (c *Conn) checkQueue() {
	q := c.Queued()
	opts := &c.loop.eng.opts
	switch {
	case q > opts.MaxQueueBytes && c.flags&flagCloseSent == 0:
		c.loop.stats.SlowConsumers++
		c.CloseSlowConsumer()
	case q > opts.WriteHighWater:
		c.backlog()
	}
}

// backlog puts c on the loop's backlog list, which is looked at after every
// inbox batch and every tick: held-back frames are handed to gnet as it
// drains, OnDrain runs below the low-water mark.
func (c *Conn) backlog() {
	if c.flags&flagBacklogged == 0 {
		c.flags |= flagBacklogged
		c.loop.backlog = append(c.loop.backlog, c)
	}
}

// CloseSlowConsumer closes c with 4009 because it does not read fast enough.
// Everything still in the engine's cork is dropped (it is whole frames:
// the client would not get it in time anyway), the close frame goes out
// right after what gnet already holds (at most about WriteHighWater bytes,
// ending at a frame boundary), and the TCP connection is closed once the
// client has taken that, or after CloseTimeout. A client that reads again in
// time thus sees the close frame, not a bare TCP close (1006). The handler
// has no closing handshake to wait for. Loop goroutine only.
func (c *Conn) CloseSlowConsumer() {
	if c.state == StateClosed || c.state == StateConnecting {
		return
	}
	if c.flags&flagCloseSent == 0 {
		if c.cork != nil {
			// keep the rest of a frame the kernel took in part: the
			// close frame must follow a whole frame
			c.cork.B = c.cork.B[:c.partialHead]
		}
		c.flags &^= flagHTTPHead
		c.sendClose(CloseSlowConsumer, "slow consumer")
		c.loop.stats.Closes[closeIndex(CloseSlowConsumer)]++
	}
	c.setClosing()
	c.flags &^= flagCloseHeld // our close frame answers a held one: AnswerClose has nothing left to do
	c.flags |= flagDrainClose
	c.backlog()
	c.rearm()
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
	if c.flags&flagCloseHeld != 0 {
		// The client's close frame came already: ours answers it.
		c.flags &^= flagCloseHeld
		c.closeAfterFlush()
		return
	}
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
	if c.flags&flagDirty == 0 && c.cork == nil {
		c.finishClose()
	}
}

// finishClose half-closes when everything was written (so the client sees our
// close frame before the FIN rather than an RST), then closes.
func (c *Conn) finishClose() {
	if c.state == StateClosed || c.flags&flagTCPClose != 0 {
		return // gnet's Close is asynchronous: ask once
	}
	c.flags |= flagTCPClose
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
		if c.flags&flagAppDeadline != 0 {
			earliest(c.appDeadline)
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
		if !c.appDeadlineDue(now) {
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
