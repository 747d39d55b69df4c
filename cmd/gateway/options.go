package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/wsgate/wsgate/engine"
)

// options is everything the gateway binary is configured with, bound to one
// FlagSet. Zero values mean the documented default (see bindFlags).
type options struct {
	Engine    engine.Options
	AdminAddr string
	Echo      bool
	Broadcast bool

	// Flag-level forms that need translating into Engine options.
	allowedOrigins string
	pingInterval   time.Duration
	idleTimeout    time.Duration
}

// bindFlags registers every flag on fs. The -h text of each flag is the
// operator's documentation: it names the default and what zero means.
func bindFlags(fs *flag.FlagSet, o *options) {
	e := &o.Engine
	fs.StringVar(&e.Addr, "addr", engine.DefaultAddr, "WebSocket listen address")
	fs.StringVar(&e.WSPath, "ws-path", engine.DefaultWSPath, "WebSocket upgrade path; other paths get 404")
	fs.StringVar(&o.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin HTTP listen address (/healthz, /readyz); empty disables")
	fs.BoolVar(&o.Echo, "echo", false, "plain RFC 6455 echo endpoint: no auth, no JSON (conformance and benchmarks)")
	fs.BoolVar(&o.Broadcast, "broadcast", false, "raw broadcast: every message goes unchanged to every other connection (benchmarks)")
	fs.IntVar(&e.Loops, "loops", 0, "event loops (0 = one per core)")
	fs.IntVar(&e.MaxConns, "max-conns", engine.DefaultMaxConns, "maximum open connections; upgrades past it get 503")
	fs.IntVar(&e.MaxMessageSize, "max-message-size", engine.DefaultMaxMessageSize, "maximum message size in bytes, after decompression; larger closes with 1009")
	fs.IntVar(&e.MaxHeaderBytes, "max-header-bytes", engine.DefaultMaxHeaderBytes, "maximum upgrade request head in bytes; larger gets 431")
	fs.DurationVar(&e.HandshakeTimeout, "handshake-timeout", engine.DefaultHandshakeTimeout, "time allowed from TCP accept to a complete upgrade request")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated hosts or globs a browser Origin must match (empty = any); others get 403")
	fs.DurationVar(&o.pingInterval, "ping-interval", engine.DefaultPingInterval, "ping a connection after this long without inbound frames (0 = never)")
	fs.DurationVar(&e.PingTimeout, "ping-timeout", engine.DefaultPingTimeout, "close with 4010 when nothing arrives this long after a ping")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", engine.DefaultIdleTimeout, "close with 4010 after this long without a data message (0 = never)")
	fs.DurationVar(&e.CloseTimeout, "close-timeout", engine.DefaultCloseTimeout, "wait this long for the client's close frame after sending ours")
	fs.BoolVar(&e.Compress, "compress", false, "negotiate permessage-deflate when the client offers it")
	fs.IntVar(&e.ReadBufferCap, "read-buffer", engine.DefaultReadBufferCap, "per-loop read buffer in bytes")
	fs.IntVar(&e.WriteBufferCap, "write-buffer", engine.DefaultWriteBufferCap, "per-connection static outbound chunk in bytes (grows past it)")
	fs.IntVar(&e.SocketSendBuffer, "sndbuf", 0, "SO_SNDBUF in bytes (0 = kernel default)")
	fs.IntVar(&e.SocketRecvBuffer, "rcvbuf", 0, "SO_RCVBUF in bytes (0 = kernel default)")
	fs.IntVar(&e.WriteHighWater, "write-high-water", engine.DefaultWriteHighWater, "queued outbound bytes above which a connection is backed up")
	fs.IntVar(&e.WriteLowWater, "write-low-water", engine.DefaultWriteLowWater, "queued outbound bytes below which a backed-up connection has drained")
	fs.IntVar(&e.MaxQueueBytes, "max-queue-bytes", engine.DefaultMaxQueueBytes, "queued outbound bytes past which a connection closes with 4009")
	fs.DurationVar(&e.TickInterval, "tick", engine.DefaultTickInterval, "timer resolution of the per-loop timing wheel")
}

// finish translates flag forms into engine options and validates the whole.
func (o *options) finish() error {
	if o.allowedOrigins != "" {
		for _, s := range strings.Split(o.allowedOrigins, ",") {
			o.Engine.AllowedOrigins = append(o.Engine.AllowedOrigins, strings.TrimSpace(s))
		}
	}
	var errs []error
	switch {
	case o.pingInterval < 0:
		errs = append(errs, fmt.Errorf("ping-interval %v: must not be negative", o.pingInterval))
	case o.pingInterval == 0:
		o.Engine.PingInterval = -1
	default:
		o.Engine.PingInterval = o.pingInterval
	}
	switch {
	case o.idleTimeout < 0:
		errs = append(errs, fmt.Errorf("idle-timeout %v: must not be negative", o.idleTimeout))
	case o.idleTimeout == 0:
		o.Engine.IdleTimeout = -1
	default:
		o.Engine.IdleTimeout = o.idleTimeout
	}
	if o.Echo && o.Broadcast {
		errs = append(errs, errors.New("-echo and -broadcast are exclusive"))
	}
	o.Engine.Normalize()
	if err := o.Engine.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
