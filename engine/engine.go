package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"github.com/wsgate/wsgate/frame"
)

// compressMin is the smallest payload worth deflating: below it the deflate
// framing costs more than it saves.
const compressMin = 64

// tickConfig holds the timeouts converted to wheel ticks once at start.
type tickConfig struct {
	handshake, ping, pingTimeout, idle, close uint32
}

// Engine runs the gnet event loops of one listener. Create it with New,
// then Start; Stop ends it. Its exported methods are safe from any goroutine
// unless they say otherwise.
type Engine struct {
	// Immutable after New.
	opts        Options
	handler     Handler
	limits      frame.Limits
	origins     originPolicy
	ticks       tickConfig
	compressMin int
	loops       []*Loop
	start       time.Time

	loopMu   sync.Mutex // guards discovery of which gnet loop is which Loop
	acc      acceptCounters
	accept   *acceptor // set by Start
	open     atomic.Int64
	draining atomic.Bool // SetDraining: refuse new upgrades with 503
	gnetEng  atomic.Pointer[gnet.Engine]
	addr     atomic.Pointer[net.TCPAddr]
	booted   chan struct{} // closed when gnet's loops exist (first OnTick)
	bootOnce sync.Once
	stopped  chan struct{}
	runErr   error
	stopTick chan struct{}
	stopOnce sync.Once

	// manualClock, set by tests before Start, replaces the wall clock as
	// the source of wheel ticks; the ticker does not run and tests advance
	// the wheels themselves, so timer tests do not depend on the machine's
	// speed.
	manualClock *atomic.Uint32
}

// New validates opts (after Normalize) and prepares an engine serving h.
func New(opts Options, h Handler) (*Engine, error) {
	opts.Normalize()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("engine: invalid options: %w", err)
	}
	if h == nil {
		return nil, errors.New("engine: nil handler")
	}
	e := &Engine{
		opts:        opts,
		handler:     h,
		limits:      frame.Limits{MaxMessageSize: opts.MaxMessageSize},
		origins:     newOriginPolicy(opts.AllowedOrigins),
		compressMin: compressMin,
		booted:      make(chan struct{}),
		stopped:     make(chan struct{}),
		stopTick:    make(chan struct{}),
	}
	toTicks := func(d time.Duration) uint32 {
		if d <= 0 {
			return 0
		}
		t := (d + opts.TickInterval - 1) / opts.TickInterval
		return uint32(max(t, 1))
	}
	e.ticks = tickConfig{
		handshake:   toTicks(opts.HandshakeTimeout),
		ping:        toTicks(opts.PingInterval),
		pingTimeout: toTicks(opts.PingTimeout),
		idle:        toTicks(opts.IdleTimeout),
		close:       toTicks(opts.CloseTimeout),
	}
	e.loops = make([]*Loop, opts.Loops)
	for i := range e.loops {
		// Corks are written once they pass half of what the loop keeps
		// for reuse (or gnet's write chunk, if smaller), so a burst
		// neither waits for the end of the inbox nor outgrows the buffers.
		flushAt := min(opts.WriteBufferCap, corkKeepMax/2)
		e.loops[i] = &Loop{eng: e, index: i, flushAt: flushAt, nextConnID: uint64(i) << 48}
	}
	return e, nil
}

// Options returns the normalized options.
func (e *Engine) Options() Options { return e.opts }

// Loops returns the engine's loops, indexed by Loop.Index.
func (e *Engine) Loops() []*Loop { return e.loops }

// OpenConns is the number of open TCP connections, upgraded or not.
func (e *Engine) OpenConns() int { return int(e.open.Load()) }

// Ticks converts d to timing-wheel ticks (at least one).
func (e *Engine) Ticks(d time.Duration) uint32 {
	t := (d + e.opts.TickInterval - 1) / e.opts.TickInterval
	return uint32(max(t, 1))
}

// Start listens and runs the loops; it returns once the listener is bound
// and the loops run. The engine accepts connections itself (acceptor.go);
// gnet runs the event loops on a private Unix socket that is unlinked right
// after it is bound, so gnet's own acceptor never sees a connection.
func (e *Engine) Start() error {
	e.start = time.Now()
	ln, err := e.listen()
	if err != nil {
		return fmt.Errorf("engine: listen on %s: %w", e.opts.Addr, err)
	}
	e.addr.Store(ln.Addr().(*net.TCPAddr))
	dir, err := privateSocketDir()
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("engine: directory for the loops' socket: %w", err)
	}
	defer os.RemoveAll(dir) // once bound, gnet's socket need not be reachable
	go func() {
		e.runErr = gnet.Run(e, "unix://"+filepath.Join(dir, "loops.sock"),
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(e.opts.Loops),
			gnet.WithReadBufferCap(e.opts.ReadBufferCap),
			gnet.WithWriteBufferCap(e.opts.WriteBufferCap),
			gnet.WithLoadBalancing(gnet.RoundRobin),
			gnet.WithTicker(true), // its first OnTick says the loops exist
			gnet.WithLogger(quietLogger{}),
			gnet.WithLogLevel(logging.ErrorLevel),
		)
		close(e.stopped)
	}()
	select {
	case <-e.booted:
	case <-e.stopped:
		_ = ln.Close()
		return fmt.Errorf("engine: start event loops: %w", e.runErr)
	}
	e.accept = newAcceptor(e, ln)
	go e.accept.run()
	if e.manualClock == nil {
		go e.ticker()
	}
	return nil
}

// Addr is the bound listen address (useful with port 0).
func (e *Engine) Addr() string {
	if a := e.addr.Load(); a != nil {
		return a.String()
	}
	return e.opts.Addr
}

// Stop closes the listener and every connection and waits for the loops.
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		close(e.stopTick)
		if a := e.accept; a != nil {
			_ = a.ln.Close()
			select {
			case <-a.done:
			case <-ctx.Done():
			}
		}
		if g := e.gnetEng.Load(); g != nil {
			err = g.Stop(ctx)
		}
	})
	select {
	case <-e.stopped:
	case <-ctx.Done():
		return fmt.Errorf("engine: stop: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("engine: stop: %w", err)
	}
	return nil
}

// Done is closed when the loops have ended.
func (e *Engine) Done() <-chan struct{} { return e.stopped }

// tickNow is the current timing-wheel tick.
func (e *Engine) tickNow() uint32 {
	if e.manualClock != nil {
		return e.manualClock.Load()
	}
	return uint32(time.Since(e.start) / e.opts.TickInterval)
}

// ticker posts a tick to every running loop. gnet's own OnTick runs on a
// goroutine of its own, not on a loop, so the wheel is driven through Post.
func (e *Engine) ticker() {
	t := time.NewTicker(e.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stopTick:
			return
		case <-t.C:
			for _, l := range e.loops {
				l.Post(Task{Fn: tickTask})
			}
		}
	}
}

// loopOf finds the Loop of a gnet event loop, registering it on first sight.
// It runs on that loop's goroutine for every accepted connection, so the
// lookup takes no lock: gl pointers are set once and read atomically, and a
// match is a few pointer compares. Only a loop's first connection takes
// loopMu to claim a free Loop.
func (e *Engine) loopOf(gl gnet.EventLoop) *Loop {
	for _, l := range e.loops {
		if p := l.gl.Load(); p != nil && p.EventLoop == gl {
			return l
		}
	}
	e.loopMu.Lock()
	defer e.loopMu.Unlock()
	for _, l := range e.loops {
		if p := l.gl.Load(); p != nil && p.EventLoop == gl {
			return l
		}
	}
	for _, l := range e.loops {
		if l.gl.Load() == nil {
			l.wheel.now = e.tickNow()
			l.gl.Store(&gnetLoop{gl})
			return l
		}
	}
	panic("engine: more gnet loops than configured") // gnet honours NumEventLoop
}

// --- gnet.EventHandler -----------------------------------------------------

// OnBoot records the gnet engine; the acceptor hands it connections.
// gnet creates its loops after OnBoot: Start waits for the first OnTick.
func (e *Engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.gnetEng.Store(&eng)
	return gnet.None
}

// OnShutdown is called once all loops stopped.
func (e *Engine) OnShutdown(gnet.Engine) {}

// OnTick runs on gnet's ticker goroutine, which gnet starts once its event
// loops exist: the first call tells Start that connections can be handed
// to them. The timing wheel is driven by Engine.ticker instead, on the loops.
func (e *Engine) OnTick() (time.Duration, gnet.Action) {
	e.bootOnce.Do(func() { close(e.booted) })
	return time.Hour, gnet.None
}

// OnOpen registers a new TCP connection in StateConnecting with a handshake deadline.
func (e *Engine) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	l := e.loopOf(gc.EventLoop())
	l.nextConnID++
	c := &Conn{gc: gc, loop: l, id: l.nextConnID, wheelSlot: -1, index: -1}
	c.dec.Init(&e.limits)
	gc.SetContext(c)
	l.addConn(c)
	l.stats.States[StateConnecting]++
	e.open.Add(1)
	now := e.tickNow()
	if int32(now-l.wheel.now) > 0 {
		l.wheel.advance(now, (*Conn).onDeadline)
	}
	c.lastFrame = l.wheel.now
	c.rearm()
	return nil, gnet.None
}

// OnClose removes the connection from its loop and tells the handler.
func (e *Engine) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil || c.state == StateClosed {
		return gnet.None
	}
	l := c.loop
	wasUpgraded := c.state != StateConnecting
	l.stats.States[c.state]--
	c.state = StateClosed
	l.removeConn(c)
	l.wheel.disarm(c)
	if c.flags&flagDirty == 0 {
		c.dropCork() // else the dirty list's flush returns it
	}
	c.dec.Release()
	e.open.Add(-1)
	if wasUpgraded {
		code := c.closeCode
		if code == 0 {
			code = closeAbnormal
		}
		e.handler.OnClose(c, code)
	}
	// What the handler wrote or handed off in OnClose (a presence event,
	// a gap) leaves with this iteration, not with whatever next wakes the
	// loop.
	l.scheduleFlush()
	return gnet.None
}

// OnTraffic upgrades, decodes and dispatches everything that arrived, then
// writes this connection's replies in one write.
func (e *Engine) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.Close
	}
	l := c.loop
	in, _ := gc.Peek(-1)
	if c.flags&flagCloseAfterFlush != 0 || c.state == StateClosed {
		_, _ = gc.Discard(len(in))
		return gnet.None
	}
	if c.state != StateConnecting {
		// Activity moves the ping deadline. It must not move the handshake
		// deadline, which counts from the accept (see rearm): otherwise a
		// client trickling a byte at a time would never time out.
		c.lastFrame = l.wheel.now
		c.pingSent = 0
	}

	consumed := 0
	if c.state == StateConnecting {
		res, n := e.upgrade(c, in)
		switch res {
		case upgradeNeedMore:
			return gnet.None // gnet keeps the partial head for the next read
		case upgradeRefused:
			_, _ = gc.Discard(len(in))
			l.stats.BytesIn += uint64(len(in))
			c.closeAfterFlush()
			e.finishTraffic(c)
			return gnet.None
		}
		consumed = n
		l.stats.States[StateConnecting]--
		l.stats.States[StateActive]++
		l.stats.Upgrades++
		c.state = StateActive
		c.lastFrame = l.wheel.now
		c.lastMessage = l.wheel.now
		e.handler.OnOpen(c)
		c.rearm()
	}

	buf := in[consumed:]
	for len(buf) > 0 && c.flags&flagCloseAfterFlush == 0 {
		n, m, err := c.dec.Next(buf)
		buf = buf[n:]
		consumed += n
		if err != nil {
			var ce *frame.CloseError
			code, reason := CloseProtocolError, "protocol error"
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Reason
			}
			c.abort(code, reason)
			break
		}
		if m.Op == 0 {
			break
		}
		e.dispatch(c, &m)
	}
	// Let the decoder return a pooled message buffer it lent out, so an idle
	// connection holds no buffers between messages.
	_, _, _ = c.dec.Next(nil)
	l.stats.BytesIn += uint64(len(in))
	_, _ = gc.Discard(len(in))
	e.finishTraffic(c)
	return gnet.None
}

// finishTraffic writes c's own corked replies now and leaves other
// connections' corks for one coalesced flush after this loop iteration.
func (e *Engine) finishTraffic(c *Conn) {
	l := c.loop
	if c.cork != nil || c.flags&flagCloseAfterFlush != 0 {
		c.flush()
	}
	if l.dirty == c && c.dirtyNext == nil && c.cork == nil {
		c.flags &^= flagDirty
		l.dirty = nil
	}
	l.flushFull()
	l.scheduleFlush()
}

// dispatch handles one decoded frame or message.
func (e *Engine) dispatch(c *Conn, m *frame.Message) {
	l := c.loop
	switch m.Op {
	case ws.OpText, ws.OpBinary:
		if c.state == StateClosing || c.flags&flagCloseHeld != 0 {
			return // after a close frame, data is discarded (RFC 6455 5.5.1)
		}
		l.stats.MessagesIn++
		c.lastMessage = l.wheel.now
		if c.state == StateIdle {
			c.SetState(StateActive)
		}
		e.handler.OnMessage(c, m.Op, m.Payload)
	case ws.OpPing:
		if c.flags&flagCloseSent == 0 {
			cork := c.corkBuf()
			cork.B = frame.AppendFrame(cork.B, ws.OpPong, m.Payload)
			c.markDirty()
		}
	case ws.OpPong:
		// Any inbound frame already cleared the ping deadline.
	case ws.OpClose:
		l.stats.ClosesReceived++
		if c.flags&(flagCloseSent|flagCloseHeld) != 0 {
			if c.flags&flagCloseSent != 0 {
				c.setClosing()
				c.closeAfterFlush()
			}
			return
		}
		c.closeCode = m.CloseCode
		if h, ok := e.handler.(CloseHolder); ok && h.HoldClose(c) {
			c.flags |= flagCloseHeld // the handler calls AnswerClose later
			return
		}
		c.answerClose()
	}
}

// answerClose echoes the client's close frame and closes the TCP
// connection once it is written.
func (c *Conn) answerClose() {
	if c.flags&flagCloseSent == 0 {
		cork := c.corkBuf()
		if c.closeCode == ws.StatusNoStatusRcvd {
			cork.B = frame.AppendFrame(cork.B, ws.OpClose, nil)
		} else {
			cork.B = frame.AppendClose(cork.B, c.closeCode, "")
		}
		c.flags |= flagCloseSent
		c.markDirty()
	}
	c.setClosing()
	c.closeAfterFlush()
}

// AnswerClose answers a client's close frame that the handler held back
// (CloseHolder); nothing otherwise. Loop goroutine only.
func (c *Conn) AnswerClose() {
	if c.flags&flagCloseHeld == 0 || c.state == StateClosed {
		return
	}
	c.flags &^= flagCloseHeld
	c.answerClose()
}

// quietLogger drops gnet's own logging below errors into nothing: the
// gateway reports through its own logs and metrics.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

var _ gnet.EventHandler = (*Engine)(nil)
