package engine

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// The engine accepts TCP connections itself, on one goroutine, and hands
// each to a gnet event loop with gnet.Engine.Register. gnet's own acceptor
// ends the whole engine on the first accept error it does not expect
// (EMFILE, ENFILE, ENOBUFS: "event loops ended unexpectedly"), so gnet only
// runs the loops, on a private Unix socket that is unlinked as soon as it is
// bound and so never accepts anything. Here an accept error never ends the
// process: the acceptor sheds and backs off, and keeps serving.
//
// Shedding happens before any byte of HTTP is read: when the engine holds
// MaxConns connections, or when the process's descriptors would come within
// fdHeadroom of RLIMIT_NOFILE, a new connection gets a short 503 and is
// closed. When accept fails with EMFILE anyway (descriptors taken elsewhere
// in the process), the acceptor closes a spare descriptor kept for the
// purpose, accepts the pending connection, sheds it and reopens the spare,
// so the client is answered instead of left hanging in the backlog.

// AcceptStats are the acceptor's counters. Safe from any goroutine.
type AcceptStats struct {
	Accepted        uint64 // connections handed to a loop
	ShedMaxConns    uint64 // refused before the upgrade: MaxConns open
	ShedDescriptors uint64 // refused before the upgrade: near RLIMIT_NOFILE, or accept hit EMFILE/ENFILE
	AcceptErrors    uint64 // accept failures (each followed by shedding or a backoff)
	EnrollErrors    uint64 // accepted but gnet could not take the connection (closed)
}

// Shed is every connection refused before the upgrade.
func (s AcceptStats) Shed() uint64 { return s.ShedMaxConns + s.ShedDescriptors }

type acceptCounters struct {
	accepted, shedMax, shedFD, acceptErrs, enrollErrs atomic.Uint64
}

// AcceptStats returns the acceptor's counters.
func (e *Engine) AcceptStats() AcceptStats {
	a := &e.acc
	return AcceptStats{
		Accepted:        a.accepted.Load(),
		ShedMaxConns:    a.shedMax.Load(),
		ShedDescriptors: a.shedFD.Load(),
		AcceptErrors:    a.acceptErrs.Load(),
		EnrollErrors:    a.enrollErrs.Load(),
	}
}

// shedResponse is what a shed connection gets before the close: short
// enough to always fit in a fresh socket's send buffer.
var shedResponse = []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 12\r\nRetry-After: 1\r\n\r\nserver full\n")

const (
	// maxEnrolling bounds connections accepted but not yet opened on a loop
	// (each holds up to two descriptors while gnet duplicates it).
	maxEnrolling = 1024
	// fdResample is how often, at most, the acceptor recounts the process's
	// descriptors when it is close to the limit.
	fdResample = 250 * time.Millisecond
	// acceptBackoffMax caps the pause after an accept error.
	acceptBackoffMax = time.Second
)

// fdHeadroom is how many descriptors the acceptor leaves for everything
// else in the process (NATS reconnects, admin HTTP, files): 1/64 of the
// limit, at least 16 and at most 1024.
func fdHeadroom(limit int) int { return min(max(limit/64, 16), 1024) }

// acceptor owns the listening socket and the spare descriptor; only its
// goroutine touches its fields after start, except done.
type acceptor struct {
	e         *Engine
	ln        *net.TCPListener
	spare     int // an open /dev/null, closed to make room on EMFILE
	fdLimit   int // RLIMIT_NOFILE (soft) at start; 0: unknown
	headroom  int
	others    int // descriptors not held by connections, at the last count
	counted   time.Time
	enrolling []<-chan gnet.RegisteredResult // oldest first
	done      chan struct{}
}

// listen binds the WebSocket port. SO_REUSEADDR is Go's default for
// listeners, so a restarted gateway rebinds despite TIME_WAIT; socket buffer
// sizes set on the listener are inherited by accepted connections.
func (e *Engine) listen() (*net.TCPListener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1, // as before: no TCP keepalive; the engine pings
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if n := e.opts.SocketSendBuffer; n > 0 {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n)
				}
				if n := e.opts.SocketRecvBuffer; n > 0 && serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	ln, err := lc.Listen(context.Background(), "tcp", e.opts.Addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

func newAcceptor(e *Engine, ln *net.TCPListener) *acceptor {
	a := &acceptor{e: e, ln: ln, spare: -1, done: make(chan struct{})}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < 1<<40 {
		a.fdLimit = int(rl.Cur)
		a.headroom = fdHeadroom(a.fdLimit)
	}
	a.openSpare()
	a.recount()
	return a
}

func (a *acceptor) openSpare() {
	if a.spare < 0 {
		if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			a.spare = fd
		}
	}
}

func (a *acceptor) closeSpare() {
	if a.spare >= 0 {
		_ = unix.Close(a.spare)
		a.spare = -1
	}
}

// recount counts the process's open descriptors and keeps how many are not
// the engine's connections.
func (a *acceptor) recount() {
	if a.fdLimit == 0 {
		return
	}
	n, err := countFDs()
	if err != nil {
		return
	}
	a.counted = time.Now()
	// A registration holds one descriptor, or two once gnet duplicated it:
	// subtracting one each errs towards counting too many others.
	a.others = max(n-a.e.OpenConns()-len(a.enrolling), 0)
}

// countFDs counts the entries of /proc/self/fd without allocating a name
// per descriptor.
func countFDs() (int, error) {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var buf [8192]byte
	n := -1 // the directory's own descriptor
	for {
		m, err := unix.Getdents(fd, buf[:])
		if err != nil {
			return 0, err
		}
		if m <= 0 {
			return n, nil
		}
		for off := 0; off < m; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			name := buf[off+19]
			if name != '.' {
				n++
			}
			off += reclen
		}
	}
}

// shedReason says why a new connection must be refused, or 0.
func (a *acceptor) shedReason() int {
	// Connections still being enrolled are not counted here: the upgrade
	// checks MaxConns again, exactly, once they are open.
	if a.e.OpenConns() >= a.e.opts.MaxConns {
		return shedMaxConns
	}
	if a.fdLimit == 0 {
		return 0
	}
	// Connections being enrolled may hold two descriptors; +1 is the new one.
	used := func() int { return a.others + a.e.OpenConns() + 2*len(a.enrolling) + 1 }
	if used()+a.headroom >= a.fdLimit-4*a.headroom && time.Since(a.counted) >= fdResample {
		a.recount()
	}
	if used()+a.headroom >= a.fdLimit {
		if time.Since(a.counted) >= fdResample/10 {
			a.recount() // shed on a fresh count only
		}
		if used()+a.headroom >= a.fdLimit {
			return shedDescriptors
		}
	}
	return 0
}

const (
	shedMaxConns = iota + 1
	shedDescriptors
)

// run accepts until the listener is closed.
func (a *acceptor) run() {
	defer close(a.done)
	defer a.closeSpare()
	var backoff time.Duration
	for {
		a.reap(false)
		a.openSpare() // after an EMFILE, as soon as there is room again
		c, err := a.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return // Stop; registrations still under way finish or fail in gnet
			}
			a.e.acc.acceptErrs.Add(1)
			if (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) && a.shedWithSpare() {
				backoff = 0
				continue
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		a.reap(false)
		switch a.shedReason() {
		case shedMaxConns:
			a.e.acc.shedMax.Add(1)
			shed(c)
			continue
		case shedDescriptors:
			a.e.acc.shedFD.Add(1)
			shed(c)
			continue
		}
		a.enroll(c)
	}
}

// shedWithSpare makes room with the spare descriptor to accept and shed one
// pending connection. It reports false when even that failed.
func (a *acceptor) shedWithSpare() bool {
	if a.spare < 0 {
		return false // lost to another thread's open; reopened when there is room
	}
	a.closeSpare()
	c, err := a.ln.AcceptTCP()
	if err == nil {
		a.e.acc.shedFD.Add(1)
		shed(c)
	}
	a.openSpare()
	return err == nil
}

// shed answers 503 and closes, before reading anything. The write is one
// non-blocking syscall into an empty send buffer.
func shed(c *net.TCPConn) {
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.Write(int(fd), shedResponse) })
	}
	_ = c.Close()
}

// enroll hands c to the next gnet loop (round robin; only this goroutine
// calls Register, and gnet's own acceptor never runs, so its balancer is
// never raced). gnet duplicates the descriptor on a worker goroutine,
// registers it on the loop (Engine.OnOpen runs there) and closes c.
func (a *acceptor) enroll(c *net.TCPConn) {
	g := a.e.gnetEng.Load()
	if g == nil {
		_ = c.Close()
		return
	}
	ch, err := g.Register(gnet.NewNetConnContext(context.Background(), c))
	if err != nil {
		a.e.acc.enrollErrs.Add(1)
		_ = c.Close()
		return
	}
	a.e.acc.accepted.Add(1)
	if len(a.enrolling) >= maxEnrolling {
		a.reapOne(true)
	}
	a.enrolling = append(a.enrolling, ch)
}

// reap collects finished registrations (all of them, waiting, when wait).
func (a *acceptor) reap(wait bool) {
	for len(a.enrolling) > 0 && a.reapOne(wait) {
	}
	if len(a.enrolling) == 0 {
		a.enrolling = a.enrolling[:0:0]
	}
}

// reapOne looks at the oldest registration. gnet's worker sends its result,
// closes our duplicate of the descriptor, then closes the channel: only the
// close ends the registration's claim on two descriptors.
func (a *acceptor) reapOne(wait bool) bool {
	ch := a.enrolling[0]
	for {
		var res gnet.RegisteredResult
		var ok bool
		if wait {
			res, ok = <-ch
		} else {
			select {
			case res, ok = <-ch:
			default:
				return false
			}
		}
		if !ok {
			break
		}
		if res.Err != nil {
			a.e.acc.enrollErrs.Add(1)
		}
	}
	a.enrolling[0] = nil
	a.enrolling = a.enrolling[1:]
	return true
}

// privateSocketDir is where gnet's never-used Unix listener is bound before
// it is unlinked.
func privateSocketDir() (string, error) { return os.MkdirTemp("", "wsgate-loops-") }
