// Package loadclient is an event-driven WebSocket load client for Linux.
//
// One Loop is one goroutine running its own epoll set (golang.org/x/sys/unix,
// epoll_pwait2 for sub-millisecond timers). A loop drives thousands of
// connections: non-blocking connect (optionally bound to a source address with
// IP_BIND_ADDRESS_NO_PORT), HTTP upgrade, masked client frames out, server
// frames parsed many per read out of one shared 64 KiB buffer. Nothing is
// allocated per message; per connection the client keeps a ~120-byte Conn plus
// a leftover buffer only while a frame is split across reads and a write
// backlog only while the socket is full.
//
// All Conn methods and all Handler callbacks run on the owning loop's
// goroutine. Other goroutines hand work to a loop with Loop.Post.
package loadclient

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/bench/wsproto"
)

// Handler receives the events of one loop's connections.
type Handler interface {
	// OnOpen: the upgrade completed, the connection can send.
	OnOpen(c *Conn)
	// OnMessage: one complete data frame (op text/binary). For a fragmented
	// message only the first fragment is delivered. payload is only valid
	// during the call. The receive time is c.Loop().Now(), stamped right
	// after the read(2) that brought the frame's last byte.
	OnMessage(c *Conn, op byte, payload []byte)
	// OnClose: the connection is gone. wasOpen is false for a failed connect
	// or upgrade; reason is a short classifier ("refused", "timeout",
	// "upgrade-timeout", "status 403", "reset", "eof", "closed", "local", ...).
	OnClose(c *Conn, wasOpen bool, reason string)
	// OnTick runs once per loop iteration (at least every 100 ms). It returns
	// the unix-ns time it next wants to run, or 0 for "no particular time".
	OnTick(l *Loop, now int64) int64
}

// Target is a WebSocket endpoint plus the source address to dial from.
type Target struct {
	dst   unix.SockaddrInet4
	src   *unix.SockaddrInet4
	req   []byte
	extra []string
	// Name is informational.
	Name string
}

// NewTarget builds a target for ws://addr+path. src may be the zero Addr
// (kernel picks the source). extra are additional request header lines.
func NewTarget(addr netip.AddrPort, path string, src netip.Addr, extra []string) (*Target, error) {
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("loadclient: only IPv4 targets are supported, got %v", addr)
	}
	t := &Target{Name: addr.String()}
	t.dst.Port = int(addr.Port())
	t.dst.Addr = addr.Addr().As4()
	if src.IsValid() {
		if !src.Is4() {
			return nil, fmt.Errorf("loadclient: source %v is not IPv4", src)
		}
		t.src = &unix.SockaddrInet4{Addr: src.As4()}
	}
	if path == "" {
		path = "/"
	}
	t.req = wsproto.UpgradeRequest(addr.String(), path, extra)
	t.extra = extra
	return t, nil
}

// WithPath returns a copy of t that requests path instead (e.g. a
// per-connection ?token=); the copy can be used for one Dial or many.
func (t *Target) WithPath(path string) *Target {
	n := *t
	if path == "" {
		path = "/"
	}
	n.req = wsproto.UpgradeRequest(t.Name, path, t.extra)
	return &n
}

// Config tunes a Loop.
type Config struct {
	// ReadBuf is the shared read buffer size (default 64 KiB). Frames larger
	// than half of it are assembled in a per-connection buffer.
	ReadBuf int
	// ConnectTimeout bounds TCP connect + upgrade (default 10 s).
	ConnectTimeout time.Duration
	// MaxBacklog closes a connection whose unsent bytes exceed it (default 8 MiB).
	MaxBacklog int
	// MinIteration makes the loop sleep so that one iteration takes at least
	// this long (0 = off). Larger values batch more frames per read at the
	// cost of receive-time resolution; used for big fan-out runs.
	MinIteration time.Duration
	// RcvBuf/SndBuf set SO_RCVBUF/SO_SNDBUF when > 0.
	RcvBuf, SndBuf int
	// PortLo..PortHi (inclusive), when set, is the source-port range this
	// loop binds explicitly for targets with a source address: the loop
	// uses ports PortLo+PortOffset, +PortStride, ... (so loops sharing a
	// source address never collide). Explicit ports avoid the kernel's
	// ephemeral-port search in connect(), which gets slow (~100+ µs per
	// connect) once many thousands of ports are in use. Ports that are
	// busy are skipped; when none is free the kernel picks one.
	PortLo, PortHi, PortStride, PortOffset int
}

const (
	stConnecting uint8 = iota + 1
	stUpgrading
	stOpen
	stClosed
)

// Conn is one client connection.
type Conn struct {
	fd       int32
	state    uint8
	fragment bool
	wantOut  bool
	paused   bool // not reading (slow-consumer simulation)
	loop     *Loop
	target   *Target
	deadline int64
	rbuf     []byte // leftover bytes (incomplete frame or response)
	wbuf     []byte // unsent bytes
	need     int32  // total size of the incomplete frame at rbuf[0], 0 unknown

	// ID, Tag and User belong to the caller.
	ID   int32
	Tag  uint8
	User int64
}

// Loop returns the owning loop.
func (c *Conn) Loop() *Loop { return c.loop }

// IsOpen reports whether the upgrade completed and the connection is not closed.
func (c *Conn) IsOpen() bool { return c.state == stOpen }

// IsClosed reports whether the connection is gone.
func (c *Conn) IsClosed() bool { return c.state == stClosed }

// Backlog is the number of unsent bytes.
func (c *Conn) Backlog() int { return len(c.wbuf) }

// Loop is one epoll event loop.
type Loop struct {
	cfg    Config
	h      Handler
	epfd   int
	evfd   int
	events []unix.EpollEvent
	rbuf   []byte
	wbuf   []byte
	conns  []*Conn // by fd
	pend   []*Conn // connecting/upgrading, scanned for timeouts
	now    int64
	rng    uint64
	pwait2 bool
	port   int // next explicit source-port index

	mu     sync.Mutex
	posted []func()
	spare  []func()

	stop    atomic.Bool
	done    chan struct{}
	nOpen   atomic.Int64
	nDialed atomic.Int64
	bytesIn atomic.Int64
}

// NewLoop creates a loop; call Run (usually `go l.Run()`).
func NewLoop(cfg Config, h Handler) (*Loop, error) {
	if cfg.ReadBuf <= 0 {
		cfg.ReadBuf = 64 << 10
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 8 << 20
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	l := &Loop{cfg: cfg, h: h, epfd: epfd, evfd: evfd,
		events: make([]unix.EpollEvent, 1024),
		rbuf:   make([]byte, cfg.ReadBuf),
		wbuf:   make([]byte, 0, 4096),
		rng:    uint64(time.Now().UnixNano()) | 1,
		pwait2: true,
		done:   make(chan struct{}),
		now:    time.Now().UnixNano(),
	}
	return l, nil
}

// Now is the loop's clock (unix ns), refreshed after every epoll wait and
// after every successful read: frames parsed out of one read share its stamp,
// frames of the next connection in the same epoll batch get their own (a
// stamp per epoll_wait would date the last socket's frames to before the
// loop had read the sockets ahead of it).
func (l *Loop) Now() int64 { return l.now }

// Open is the number of open connections (safe from any goroutine).
func (l *Loop) Open() int64 { return l.nOpen.Load() }

// BytesIn is the number of bytes read (safe from any goroutine).
func (l *Loop) BytesIn() int64 { return l.bytesIn.Load() }

// Post runs f on the loop goroutine soon. Safe from any goroutine.
func (l *Loop) Post(f func()) {
	l.mu.Lock()
	l.posted = append(l.posted, f)
	l.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.evfd, one[:])
}

// Call runs f on the loop and waits for it (do not call from the loop itself).
func (l *Loop) Call(f func()) {
	ch := make(chan struct{})
	l.Post(func() { f(); close(ch) })
	select {
	case <-ch:
	case <-l.done:
	}
}

// Stop asks the loop to close every connection and return from Run.
func (l *Loop) Stop() {
	l.stop.Store(true)
	l.Post(func() {})
}

// Done is closed when Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

// DialError is a synchronous dial failure.
type DialError struct{ Reason string }

func (e *DialError) Error() string { return "dial: " + e.Reason }

// Dial starts a connection (loop goroutine only). Asynchronous failures are
// reported through Handler.OnClose(c, false, reason).
func (l *Loop) Dial(t *Target, id int32, tag uint8) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &DialError{Reason: Classify(err)}
	}
	fail := func(err error) (*Conn, error) {
		unix.Close(fd)
		return nil, &DialError{Reason: Classify(err)}
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if l.cfg.RcvBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, l.cfg.RcvBuf)
	}
	if l.cfg.SndBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, l.cfg.SndBuf)
	}
	if t.src != nil {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := *t.src // x/sys writes into the Sockaddr: copy, targets are shared by loops
		bound := false
		if l.cfg.PortLo > 0 && l.cfg.PortHi >= l.cfg.PortLo {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			stride := max(l.cfg.PortStride, 1)
			slots := (l.cfg.PortHi - l.cfg.PortLo + 1 - l.cfg.PortOffset + stride - 1) / stride
			for try := 0; try < 32 && slots > 0; try++ {
				src.Port = l.cfg.PortLo + l.cfg.PortOffset + (l.port%slots)*stride
				l.port++
				if unix.Bind(fd, &src) == nil {
					bound = true
					break
				}
			}
		}
		if !bound {
			src.Port = 0
			if err := unix.Bind(fd, &src); err != nil {
				return fail(err)
			}
		}
	}
	dst := t.dst
	err = unix.Connect(fd, &dst)
	if err == unix.EADDRNOTAVAIL && t.src != nil && l.cfg.PortLo > 0 {
		// explicit port still tied to an old connection: let the kernel pick
		unix.Close(fd)
		cfg := l.cfg.PortLo
		l.cfg.PortLo = 0
		c, err := l.Dial(t, id, tag)
		l.cfg.PortLo = cfg
		return c, err
	}
	if err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		return fail(err)
	}
	c := &Conn{fd: int32(fd), state: stConnecting, loop: l, target: t, ID: id, Tag: tag,
		deadline: l.now + int64(l.cfg.ConnectTimeout)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
		return fail(err)
	}
	for fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*Conn, len(l.conns)+1024)...)
	}
	l.conns[fd] = c
	l.pend = append(l.pend, c)
	l.nDialed.Add(1)
	return c, nil
}

// Classify maps an error to a short failure reason.
func Classify(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ECONNREFUSED:
			return "refused"
		case unix.ETIMEDOUT:
			return "timeout"
		case unix.ECONNRESET, unix.EPIPE:
			return "reset"
		case unix.EADDRNOTAVAIL, unix.EADDRINUSE:
			return "no-source-port"
		case unix.EMFILE, unix.ENFILE:
			return "fd-limit"
		case unix.EHOSTUNREACH, unix.ENETUNREACH:
			return "unreachable"
		}
		return "errno " + errno.Error()
	}
	var se *wsproto.StatusError
	if errors.As(err, &se) {
		return fmt.Sprintf("status %d", se.Code)
	}
	switch err {
	case wsproto.ErrBadAccept:
		return "bad-accept"
	case wsproto.ErrBadResponse:
		return "bad-response"
	case wsproto.ErrProtocol:
		return "protocol"
	}
	return err.Error()
}

func (l *Loop) nextMask() uint32 {
	x := l.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	l.rng = x
	return uint32(x >> 16)
}

// WriteMessage sends one masked data frame (op wsproto.OpText/OpBinary).
func (c *Conn) WriteMessage(op byte, payload []byte) error {
	if c.state != stOpen {
		return errNotOpen
	}
	l := c.loop
	if len(c.wbuf) > 0 {
		c.wbuf = wsproto.AppendFrame(c.wbuf, op, payload, l.nextMask())
		if len(c.wbuf) > l.cfg.MaxBacklog {
			l.closeConn(c, "write-backlog", true)
			return errBacklog
		}
		return nil
	}
	fr := wsproto.AppendFrame(l.wbuf[:0], op, payload, l.nextMask())
	l.wbuf = fr[:0]
	return l.writeRaw(c, fr)
}

var (
	errNotOpen = errors.New("loadclient: connection not open")
	errBacklog = errors.New("loadclient: write backlog exceeded")
)

// writeRaw writes b now, keeping what the socket refuses.
func (l *Loop) writeRaw(c *Conn, b []byte) error {
	if len(c.wbuf) > 0 {
		c.wbuf = append(c.wbuf, b...)
		return nil
	}
	n, err := unix.Write(int(c.fd), b)
	if err != nil {
		if err == unix.EAGAIN || err == unix.EINTR {
			n = 0
		} else {
			l.closeConn(c, Classify(err), false)
			return err
		}
	}
	if n < len(b) {
		c.wbuf = append(c.wbuf[:0], b[n:]...)
		l.setOut(c, true)
	}
	return nil
}

func (l *Loop) setOut(c *Conn, on bool) {
	if c.wantOut == on {
		return
	}
	c.wantOut = on
	l.rearm(c)
}

func (l *Loop) rearm(c *Conn) {
	ev := uint32(unix.EPOLLIN)
	if c.paused {
		ev = 0
	}
	if c.wantOut {
		ev |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &unix.EpollEvent{Events: ev, Fd: c.fd})
}

// SetReading stops (false) or resumes (true) reading from an open
// connection (loop goroutine only). A connection that does not read lets
// the server's queue for it grow: the slow-consumer scenario. Closes by the
// peer are noticed only once reading resumes.
func (c *Conn) SetReading(on bool) {
	if c.state != stOpen || c.paused == !on {
		return
	}
	c.paused = !on
	c.loop.rearm(c)
}

// Close closes the connection. graceful sends a close frame first (best
// effort); otherwise the socket is reset (SO_LINGER 0), which avoids
// TIME_WAIT on the client side when tearing down thousands of connections.
func (c *Conn) Close(graceful bool) {
	if c.state == stClosed {
		return
	}
	l := c.loop
	if graceful && c.state == stOpen {
		var body = [2]byte{0x03, 0xe8} // 1000
		fr := wsproto.AppendFrame(l.wbuf[:0], wsproto.OpClose, body[:], l.nextMask())
		l.wbuf = fr[:0]
		if len(c.wbuf) == 0 {
			_, _ = unix.Write(int(c.fd), fr)
		}
	}
	l.closeConn(c, "local", !graceful)
}

func (l *Loop) closeConn(c *Conn, reason string, abort bool) {
	if c.state == stClosed {
		return
	}
	wasOpen := c.state == stOpen
	fd := int(c.fd)
	if abort {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	unix.Close(fd)
	if fd < len(l.conns) && l.conns[fd] == c {
		l.conns[fd] = nil
	}
	c.state = stClosed
	c.fd = -1
	c.rbuf, c.wbuf = nil, nil
	if wasOpen {
		l.nOpen.Add(-1)
	}
	l.h.OnClose(c, wasOpen, reason)
}

const maxWait = int64(100 * time.Millisecond)

// Run is the loop body; it returns after Stop, having reset all connections.
func (l *Loop) Run() {
	defer close(l.done)
	defer l.teardown()
	nextScan := int64(0)
	for !l.stop.Load() {
		l.now = time.Now().UnixNano()
		iterStart := l.now
		l.runPosted()
		wake := l.h.OnTick(l, l.now)
		timeout := maxWait
		if wake > 0 {
			timeout = wake - l.now
		}
		if len(l.pend) > 0 && nextScan-l.now < timeout {
			timeout = nextScan - l.now
		}
		if timeout < 0 {
			timeout = 0
		}
		if timeout > maxWait {
			timeout = maxWait
		}
		if l.cfg.MinIteration > 0 {
			// Let frames accumulate: sleep the rest of the minimum iteration
			// before polling, but never past the next wanted wake time.
			rest := iterStart + int64(l.cfg.MinIteration) - time.Now().UnixNano()
			if rest > timeout {
				rest = timeout
			}
			if rest > 20_000 {
				time.Sleep(time.Duration(rest))
				timeout = 0
			}
		}
		n, err := l.wait(timeout)
		l.now = time.Now().UnixNano()
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("loadclient: epoll wait: %v", err))
		}
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				var b [8]byte
				_, _ = unix.Read(l.evfd, b[:])
				continue
			}
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue
			}
			l.handle(l.conns[fd], ev.Events)
		}
		if len(l.pend) > 0 && l.now >= nextScan {
			l.scanPending()
			nextScan = l.now + int64(20*time.Millisecond)
		}
	}
}

func (l *Loop) wait(timeoutNs int64) (int, error) {
	if l.pwait2 && timeoutNs > 0 {
		ts := unix.NsecToTimespec(timeoutNs)
		r, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)),
			uintptr(unsafe.Pointer(&ts)), 0, 0)
		if e == 0 {
			return int(r), nil
		}
		if e != unix.ENOSYS {
			return 0, e
		}
		l.pwait2 = false
	}
	ms := int((timeoutNs + 999_999) / 1_000_000)
	return unix.EpollWait(l.epfd, l.events, ms)
}

func (l *Loop) runPosted() {
	l.mu.Lock()
	if len(l.posted) == 0 {
		l.mu.Unlock()
		return
	}
	fs := l.posted
	l.posted = l.spare[:0]
	l.mu.Unlock()
	for i, f := range fs {
		f()
		fs[i] = nil
	}
	l.mu.Lock()
	l.spare = fs[:0]
	l.mu.Unlock()
}

func (l *Loop) teardown() {
	l.runPosted()
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c, "local", true)
		}
	}
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

func (l *Loop) scanPending() {
	j := 0
	for _, c := range l.pend {
		if c.state == stConnecting || c.state == stUpgrading {
			if l.now >= c.deadline {
				r := "timeout"
				if c.state == stUpgrading {
					r = "upgrade-timeout"
				}
				l.closeConn(c, r, true)
				continue
			}
			l.pend[j] = c
			j++
		}
	}
	for k := j; k < len(l.pend); k++ {
		l.pend[k] = nil
	}
	l.pend = l.pend[:j]
}

func (l *Loop) handle(c *Conn, ev uint32) {
	switch c.state {
	case stConnecting:
		soerr, err := unix.GetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = syscall.Errno(soerr)
		}
		if err != nil {
			l.closeConn(c, Classify(err), false)
			return
		}
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		c.state = stUpgrading
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: c.fd})
		_ = l.writeRaw(c, c.target.req)
		return
	case stClosed:
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(c.wbuf) > 0 {
		n, err := unix.Write(int(c.fd), c.wbuf)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.closeConn(c, Classify(err), false)
			return
		}
		if n > 0 {
			rest := copy(c.wbuf, c.wbuf[n:])
			c.wbuf = c.wbuf[:rest]
		}
		if len(c.wbuf) == 0 {
			if cap(c.wbuf) > 64<<10 {
				c.wbuf = nil
			}
			l.setOut(c, false)
		}
	} else if ev&unix.EPOLLOUT != 0 {
		l.setOut(c, false)
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.readable(c)
	}
}

func (l *Loop) readable(c *Conn) {
	var data []byte
	direct := c.need > 0 && int(c.need) > len(l.rbuf)/2
	if direct {
		// big frame: read straight into the connection's own buffer
		if cap(c.rbuf) < int(c.need) {
			nb := make([]byte, len(c.rbuf), int(c.need)+len(l.rbuf))
			copy(nb, c.rbuf)
			c.rbuf = nb
		}
		n, err := unix.Read(int(c.fd), c.rbuf[len(c.rbuf):cap(c.rbuf)])
		l.now = time.Now().UnixNano()
		if !l.readOK(c, n, err) {
			return
		}
		l.bytesIn.Add(int64(n))
		data = c.rbuf[:len(c.rbuf)+n]
	} else {
		off := copy(l.rbuf, c.rbuf)
		n, err := unix.Read(int(c.fd), l.rbuf[off:])
		l.now = time.Now().UnixNano()
		if !l.readOK(c, n, err) {
			return
		}
		l.bytesIn.Add(int64(n))
		data = l.rbuf[:off+n]
	}
	if c.state == stUpgrading {
		hl, err := wsproto.ParseUpgradeResponse(data)
		if err == wsproto.ErrIncomplete {
			c.rbuf = append(c.rbuf[:0], data...)
			return
		}
		if err != nil {
			l.closeConn(c, Classify(err), true)
			return
		}
		c.state = stOpen
		c.rbuf = c.rbuf[:0]
		l.nOpen.Add(1)
		l.h.OnOpen(c)
		if c.state != stOpen {
			return
		}
		data = data[hl:]
		if len(data) == 0 {
			c.rbuf = nil
			return
		}
	}
	used := l.parse(c, data)
	if c.state == stClosed {
		return
	}
	rest := data[used:]
	if len(rest) == 0 {
		if direct || cap(c.rbuf) > 4096 {
			c.rbuf = nil
		} else {
			c.rbuf = c.rbuf[:0]
		}
		return
	}
	if direct {
		// keep in place (shift if something was consumed)
		if used > 0 {
			k := copy(c.rbuf[:cap(c.rbuf)], rest)
			c.rbuf = c.rbuf[:k]
		} else {
			c.rbuf = data
		}
		return
	}
	c.rbuf = append(c.rbuf[:0], rest...)
}

func (l *Loop) readOK(c *Conn, n int, err error) bool {
	if err != nil {
		if err == unix.EAGAIN || err == unix.EINTR {
			return false
		}
		l.closeConn(c, Classify(err), false)
		return false
	}
	if n == 0 {
		r := "eof"
		if c.state == stOpen {
			r = "closed"
		}
		l.closeConn(c, r, false)
		return false
	}
	return true
}

// parse consumes complete frames from data; returns bytes used.
func (l *Loop) parse(c *Conn, data []byte) int {
	p := 0
	c.need = 0
	for p < len(data) {
		h, ok, err := wsproto.ParseHeader(data[p:])
		if err != nil {
			l.closeConn(c, "protocol", true)
			return p
		}
		if !ok {
			break
		}
		end := p + h.HLen + h.Len
		if end > len(data) {
			c.need = int32(h.HLen + h.Len)
			break
		}
		payload := data[p+h.HLen : end]
		p = end
		if h.Masked {
			wsproto.MaskBytes(h.Mask, payload)
		}
		switch h.Op {
		case wsproto.OpText, wsproto.OpBinary:
			if !h.Fin {
				c.fragment = true
			}
			l.h.OnMessage(c, h.Op, payload)
		case wsproto.OpCont:
			if h.Fin {
				c.fragment = false
			}
		case wsproto.OpPing:
			fr := wsproto.AppendFrame(l.wbuf[:0], wsproto.OpPong, payload, l.nextMask())
			l.wbuf = fr[:0]
			_ = l.writeRaw(c, fr)
		case wsproto.OpPong:
		case wsproto.OpClose:
			fr := wsproto.AppendFrame(l.wbuf[:0], wsproto.OpClose, payload[:min(len(payload), 2)], l.nextMask())
			l.wbuf = fr[:0]
			_ = l.writeRaw(c, fr)
			reason := "server-close"
			if len(payload) >= 2 {
				reason = "server-close " + strconv.Itoa(int(payload[0])<<8|int(payload[1]))
			}
			l.closeConn(c, reason, false)
			return p
		default:
			l.closeConn(c, "protocol", true)
			return p
		}
		if c.state != stOpen {
			return p
		}
	}
	return p
}
