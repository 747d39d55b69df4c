package engine

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"strings"
	"time"
)

// Options configures an Engine. The zero value of every field means "use the
// default" unless its comment says otherwise; Normalize fills the defaults and
// Validate reports values that cannot work. cmd/gateway binds flags straight
// onto this struct.
type Options struct {
	// Addr is the TCP listen address of the WebSocket port (default ":8080").
	Addr string
	// WSPath is the upgrade path (default "/ws"); any other path gets 404.
	WSPath string
	// Loops is the number of gnet event loops (default: one per core).
	Loops int
	// MaxConns caps open connections, upgrading or upgraded; past it an
	// upgrade gets 503 (default 1,000,000; 0 means the default).
	MaxConns int
	// MaxMessageSize caps a reassembled and inflated message (default 64 KiB).
	MaxMessageSize int
	// MaxHeaderBytes caps the upgrade request line plus headers (default 8 KiB); over it: 431.
	MaxHeaderBytes int
	// HandshakeTimeout bounds the time from TCP accept to a complete upgrade request (default 5s).
	HandshakeTimeout time.Duration
	// AllowedOrigins lists hosts or globs ("*.example.com") a browser Origin must match;
	// empty allows any origin. Requests without Origin (non-browser clients) are allowed.
	AllowedOrigins []string
	// PingInterval is how long a connection may be silent before the gateway pings it (default 30s; negative disables pings).
	PingInterval time.Duration
	// PingTimeout is how long after a ping any frame must arrive before a 4010 close (default 10s).
	PingTimeout time.Duration
	// IdleTimeout closes a connection with 4010 after this long without a data message
	// (default 5m; negative means never — the flag's 0).
	IdleTimeout time.Duration
	// CloseTimeout bounds the wait for the client's close frame after the gateway sent its own (default 3s).
	CloseTimeout time.Duration
	// Compress enables permessage-deflate when the client offers it.
	Compress bool

	// ReadBufferCap is the per-loop read buffer of gnet (default 64 KiB).
	ReadBufferCap int
	// WriteBufferCap is gnet's static outbound chunk per connection (default 16 KiB);
	// past it, the outbound buffer grows in linked chunks.
	WriteBufferCap int
	// SocketSendBuffer / SocketRecvBuffer set SO_SNDBUF/SO_RCVBUF when > 0 (default: kernel's).
	SocketSendBuffer int
	SocketRecvBuffer int
	// WriteHighWater is the queued outbound bytes above which a connection counts as
	// backed up (router flow control drops low priority there; default 64 KiB).
	WriteHighWater int
	// WriteLowWater is where a backed-up connection counts as drained again (default 16 KiB).
	WriteLowWater int
	// MaxQueueBytes closes a connection with 4009 when its queued outbound bytes pass it (default 1 MiB).
	MaxQueueBytes int

	// InboxBytes bounds the bytes of data-carrying work (Loop.PostBytes:
	// deliveries from other loops and from the backplane) waiting in one
	// loop's inbox (default 64 MiB); past it PostBytes refuses and the caller
	// counts the drop and tells the clients affected.
	InboxBytes int

	// TickInterval is the resolution of the per-loop timing wheel (default 100ms).
	TickInterval time.Duration
}

// Defaults used by Normalize; exported so cmd/ can show them in -h.
const (
	DefaultAddr             = ":8080"
	DefaultWSPath           = "/ws"
	DefaultMaxConns         = 1_000_000
	DefaultMaxMessageSize   = 64 << 10
	DefaultMaxHeaderBytes   = 8 << 10
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultPingInterval     = 30 * time.Second
	DefaultPingTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultCloseTimeout     = 3 * time.Second
	DefaultReadBufferCap    = 64 << 10
	DefaultWriteBufferCap   = 16 << 10
	DefaultWriteHighWater   = 64 << 10
	DefaultWriteLowWater    = 16 << 10
	DefaultMaxQueueBytes    = 1 << 20
	DefaultTickInterval     = 100 * time.Millisecond
	DefaultInboxBytes       = 64 << 20
)

// Normalize replaces zero values with defaults.
func (o *Options) Normalize() {
	setDefault(&o.Addr, DefaultAddr)
	setDefault(&o.WSPath, DefaultWSPath)
	setDefault(&o.Loops, runtime.NumCPU())
	setDefault(&o.MaxConns, DefaultMaxConns)
	setDefault(&o.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&o.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&o.PingInterval, DefaultPingInterval)
	setDefault(&o.PingTimeout, DefaultPingTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.CloseTimeout, DefaultCloseTimeout)
	setDefault(&o.ReadBufferCap, DefaultReadBufferCap)
	setDefault(&o.WriteBufferCap, DefaultWriteBufferCap)
	setDefault(&o.WriteHighWater, DefaultWriteHighWater)
	setDefault(&o.WriteLowWater, DefaultWriteLowWater)
	setDefault(&o.MaxQueueBytes, DefaultMaxQueueBytes)
	setDefault(&o.TickInterval, DefaultTickInterval)
	setDefault(&o.InboxBytes, DefaultInboxBytes)
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every value that cannot work, joined into one error.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !strings.HasPrefix(o.WSPath, "/") || path.Clean(o.WSPath) != o.WSPath {
		bad("ws-path %q: must be a clean absolute path such as /ws", o.WSPath)
	}
	if o.Loops < 1 || o.Loops > 1024 {
		bad("loops %d: must be between 1 and 1024", o.Loops)
	}
	if o.MaxConns < 1 {
		bad("max-conns %d: must be positive", o.MaxConns)
	}
	if o.MaxMessageSize < 125 || o.MaxMessageSize > 1<<30 {
		bad("max-message-size %d: must be between 125 bytes and 1 GiB", o.MaxMessageSize)
	}
	if o.MaxHeaderBytes < 256 || o.MaxHeaderBytes > 1<<20 {
		bad("max-header-bytes %d: must be between 256 and 1 MiB", o.MaxHeaderBytes)
	}
	if o.HandshakeTimeout <= 0 {
		bad("handshake-timeout %v: must be positive", o.HandshakeTimeout)
	}
	if o.PingTimeout <= 0 {
		bad("ping-timeout %v: must be positive", o.PingTimeout)
	}
	if o.CloseTimeout <= 0 {
		bad("close-timeout %v: must be positive", o.CloseTimeout)
	}
	if o.TickInterval < time.Millisecond || o.TickInterval > time.Second {
		bad("tick %v: must be between 1ms and 1s", o.TickInterval)
	}
	if o.ReadBufferCap < 4<<10 {
		bad("read-buffer %d: must be at least 4 KiB", o.ReadBufferCap)
	}
	if o.WriteBufferCap < 1<<10 {
		bad("write-buffer %d: must be at least 1 KiB", o.WriteBufferCap)
	}
	if o.WriteLowWater < 0 || o.WriteLowWater > o.WriteHighWater {
		bad("write-low-water %d: must be between 0 and write-high-water (%d)", o.WriteLowWater, o.WriteHighWater)
	}
	if o.MaxQueueBytes < o.WriteHighWater {
		bad("max-queue-bytes %d: must be at least write-high-water (%d)", o.MaxQueueBytes, o.WriteHighWater)
	}
	if o.InboxBytes < 64<<10 {
		bad("loop-inbox-bytes %d: must be at least 64 KiB", o.InboxBytes)
	}
	for _, origin := range o.AllowedOrigins {
		if origin == "" || strings.ContainsAny(origin, " /") {
			bad("allowed-origins %q: want a host or glob such as app.example.com or *.example.com", origin)
		}
	}
	return errors.Join(errs...)
}
