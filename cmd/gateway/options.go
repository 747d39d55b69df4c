package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
	"github.com/wsgate/wsgate/router/natsbp"
)

// options is everything the gateway binary is configured with, bound to one
// FlagSet. Zero values mean the documented default (see bindFlags).
type options struct {
	Engine    engine.Options
	Router    router.Options
	Dev       bool // generate a development secret when none is configured
	AdminAddr string
	Echo      bool
	Broadcast bool

	// Flag-level forms that need translating into Engine options.
	allowedOrigins string
	hookJoin       string // -hook-join, comma-separated room patterns
	pingInterval   time.Duration
	idleTimeout    time.Duration
	jwtSecret      string
	jwtPublicKey   string

	GOGC        int
	MemoryLimit int64

	DrainTime time.Duration
	PProf     bool
	LogLevel  string
	LogFormat string
	logLevel  slog.Level

	APIKey      string
	NATSURL     string
	NATSListen  string
	NATSCluster string
	NATSRoutes  string
	NATSPrefix  string

	History        bool
	DataDir        string
	HistoryMaxMsgs int64
	HistoryTTL     time.Duration
	// Backplane flow bounds (natsbp.Options / HistoryOptions).
	NATSPendingBytes   int
	NATSUserInterest   string // "exact" (a subscription per online user) or "shared" (natsbp.Options.SharedUserInterest)
	HistoryFillWorkers int
	HistoryFillTimeout time.Duration
	HistoryParkBytes   int
	HistoryReplica     int
	PresenceWindow     time.Duration

	InstanceTimeout       time.Duration
	PublishConfirmTimeout time.Duration
	PublishQueueBytes     int
}

// bindFlags registers every flag on fs. The -h text of each flag is the
// operator's documentation: it names the default and what zero means.
func bindFlags(fs *flag.FlagSet, o *options) {
	e := &o.Engine
	fs.StringVar(&e.Addr, "addr", engine.DefaultAddr, "WebSocket listen address")
	fs.StringVar(&e.WSPath, "ws-path", engine.DefaultWSPath, "WebSocket upgrade path; other paths get 404")
	fs.StringVar(&o.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin HTTP listen address (/healthz, /readyz, /metrics, /demo, the JS client /client/wsgate.js, /api/publish, the control API /api/...); empty disables")
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
	fs.IntVar(&e.InboxBytes, "loop-inbox-bytes", engine.DefaultInboxBytes, "bytes of deliveries waiting in one event loop's inbox; past it deliveries are dropped, counted and the receivers told with gap")

	r := &o.Router
	fs.BoolVar(&o.Dev, "dev", false, "development mode: generate and print a JWT secret when none is set, and a token command")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 secret for client tokens (default: $WSGATE_JWT_SECRET)")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file with an RSA (RS256) or EC P-256 (ES256) public key for client tokens")
	fs.BoolVar(&r.Auth.AllowNoExp, "jwt-allow-no-exp", false, "accept tokens without an exp claim")
	fs.DurationVar(&r.AuthTimeout, "auth-timeout", 5*time.Second, "close with 4008 when no valid auth message arrives this long after the upgrade")
	fs.DurationVar(&r.TokenGrace, "token-grace", 30*time.Second, "after a token's exp (token_expired), how long a refresh may still come before the 4011 close (0 = close at exp)")
	fs.StringVar(&r.InstanceID, "instance-id", "", "this instance's id in message ids, on the backplane and as its embedded NATS server's name (default: random; required and stable with -history and -nats-cluster)")
	fs.BoolVar(&r.PresenceEvents, "presence-events", false, "send user:joined / user:left to room members (across instances: when a user's first connection in the room anywhere joins and its last one leaves)")
	fs.IntVar(&r.PresenceMaxUsers, "presence-max-users", router.DefaultPresenceMaxUsers, "most users in one presence answer (client and control API); a larger room's answer holds the first ones in sort order and says truncated: true (1-"+strconv.Itoa(router.MaxPresenceMaxUsers)+")")
	fs.DurationVar(&r.PresenceGrace, "presence-grace", 0, "with a backplane, how long a user's last connection anywhere may be gone before user:left, cancelled by a join meanwhile, so a reconnect to another instance makes no left/joined pair (0 = one heartbeat interval, min(1s, -instance-timeout/3); negative = none)")
	fs.Float64Var(&r.RateMsgs, "rate-msgs", 100, "messages per second per connection, sustained (0 = unlimited)")
	fs.Float64Var(&r.RateBytes, "rate-bytes", 1<<20, "inbound bytes per second per connection, sustained (0 = unlimited)")
	fs.IntVar(&r.RateBurst, "rate-burst", 0, "token bucket size in messages (0 = 2 x -rate-msgs); the byte bucket holds as many seconds")
	fs.IntVar(&r.RateKickAfter, "rate-kick-after", 20, "close with 1008 after this many rate-limited messages in a row (0 = never)")
	fs.IntVar(&r.MaxSubscriptions, "max-subscriptions", 256, "rooms plus channels one connection may join")
	fs.DurationVar(&r.RPCTimeout, "rpc-timeout", 5*time.Second, "how long an rpc waits for the service's answer before error timeout")
	fs.IntVar(&r.RPCMaxInFlight, "rpc-max-inflight", 16, "rpc requests one connection may have in flight; past it error rate_limited")
	fs.BoolVar(&r.Events, "events", false, "publish lifecycle events on gw.event.connect, gw.event.disconnect, gw.event.join.ROOM and gw.event.leave.ROOM (gw = -nats-prefix; fire and forget)")
	fs.IntVar(&r.EventQueueBytes, "event-queue-bytes", router.DefaultEventQueueBytes, "bytes of events and hook requests waiting to be published to NATS; past it events are dropped and counted, hook requests fail as unavailable")
	fs.BoolVar(&r.HookConnect, "hook-connect", false, "ask gw.hook.connect (gw = -nats-prefix) before admitting a connection with a valid token (deny closes 4503, no answer 1013)")
	fs.StringVar(&o.hookJoin, "hook-join", "", "comma-separated room globs whose joins ask gw.hook.join (gw = -nats-prefix; empty = none)")
	fs.DurationVar(&r.HookTimeout, "hook-timeout", router.DefaultHookTimeout, "how long the gateway waits for a hook's answer")

	fs.IntVar(&o.GOGC, "gogc", 100, "Go GC target percentage (lower trades CPU for less memory per idle connection; see docs/operations.md)")
	fs.Int64Var(&o.MemoryLimit, "memory-limit", 0, "soft Go memory limit in bytes (0 = none); the GC works harder near it")
	fs.DurationVar(&o.DrainTime, "drain-time", 10*time.Second, "on SIGTERM/SIGINT, spread reconnect notices and 1001 closes over this long before exiting (a second signal exits at once)")
	fs.BoolVar(&o.PProf, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin port")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json (log/slog)")
	fs.StringVar(&o.APIKey, "api-key", "", "bearer key for POST /api/publish and the control API (/api/disconnect, ...) on the admin port (default: $WSGATE_API_KEY; empty disables the API)")
	fs.StringVar(&o.NATSURL, "nats-url", "", "external NATS server(s), comma-separated; empty runs an embedded NATS server")
	fs.StringVar(&o.NATSListen, "nats-listen", natsbp.DefaultEmbeddedListen, "client address of the embedded NATS server, for services ('-' = in-process only; not with -nats-cluster)")
	fs.StringVar(&o.NATSCluster, "nats-cluster", "", "route listen address of the embedded NATS server, to cluster gateways (e.g. 0.0.0.0:6222)")
	fs.StringVar(&o.NATSRoutes, "nats-routes", "", "comma-separated nats-route://host:port of other gateways' embedded servers")
	fs.StringVar(&o.NATSPrefix, "nats-prefix", "gw", "prefix of every NATS subject")
	fs.BoolVar(&o.History, "history", false, "keep room messages in JetStream: delivered room messages carry seq and resume replays gaps")
	fs.StringVar(&o.DataDir, "data-dir", "wsgate-data", "where the embedded NATS server keeps history (JetStream files); created if missing, one per instance")
	fs.Int64Var(&o.HistoryMaxMsgs, "history-max-msgs", 100, "messages kept per room with -history")
	fs.DurationVar(&o.HistoryTTL, "history-ttl", 24*time.Hour, "how long room messages are kept with -history (0 = no age limit)")
	fs.IntVar(&o.NATSPendingBytes, "nats-pending-bytes", natsbp.DefaultPendingBytes, "bytes of messages from NATS waiting to be routed; past it they are dropped, counted (backplane_dropped_total) and the receivers told with gap")
	fs.StringVar(&o.NATSUserInterest, "nats-user-interest", "exact", "exact: one NATS subscription per online user, so an instance gets only its users' messages; shared: one gw.user.* subscription filtered here, ~1 KB less per connection (with the embedded server), but every instance gets every user message")
	fs.IntVar(&o.HistoryFillWorkers, "history-fill-workers", natsbp.DefaultGapFillWorkers, "with -history, rooms whose live gaps are filled from the history at once")
	fs.DurationVar(&o.HistoryFillTimeout, "history-fill-timeout", natsbp.DefaultGapFillTimeout, "with -history, time allowed for one gap fill; past it the members get gap")
	fs.IntVar(&o.HistoryParkBytes, "history-park-bytes", natsbp.DefaultGapParkBytes, "with -history, bytes of live messages held back while their rooms' gaps are filled; past it the next fill fetches them")
	fs.IntVar(&o.HistoryReplica, "history-replicas", 1, "copies of the history stream on the NATS cluster's servers (1 to 5; 3 on a three-server cluster survives one server's loss)")
	fs.DurationVar(&o.PresenceWindow, "presence-window", 100*time.Millisecond, "how long a control operation (disconnect, subscribe, unsubscribe, info) waits at most for the other instances' answers; presence answers at once from the replicated state")
	fs.DurationVar(&o.InstanceTimeout, "instance-timeout", natsbp.DefaultInstanceTimeout, "an instance silent on the heartbeat this long is lost: its users leave every room (presence), and after a NATS reconnect this instance waits at most this long for instances seen before to heartbeat again before acking messages")
	fs.DurationVar(&o.PublishConfirmTimeout, "publish-confirm-timeout", natsbp.DefaultConfirmTimeout, "wait this long for NATS to confirm published messages (and any socket write) before answering error unavailable")
	fs.IntVar(&o.PublishQueueBytes, "publish-queue-bytes", natsbp.DefaultPublishQueueBytes, "bytes of messages waiting to be published to NATS; past it client messages get error unavailable")
}

// logger builds the structured logger -log-level and -log-format ask for.
func (o *options) logger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.logLevel}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// finish translates flag forms into engine options and validates the whole.
func (o *options) finish() error {
	if o.allowedOrigins != "" {
		for _, s := range strings.Split(o.allowedOrigins, ",") {
			o.Engine.AllowedOrigins = append(o.Engine.AllowedOrigins, strings.TrimSpace(s))
		}
	}
	var errs []error
	if o.hookJoin != "" {
		for _, p := range strings.Split(o.hookJoin, ",") {
			p = strings.TrimSpace(p)
			if !auth.ValidPattern(p) {
				errs = append(errs, fmt.Errorf("hook-join pattern %q: want a room glob as in the rooms claim (* within a token, ** across dots)", p))
			}
			o.Router.HookJoin = append(o.Router.HookJoin, p)
		}
	}
	if o.Router.HookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("hook-timeout %v: must be positive", o.Router.HookTimeout))
	}
	if o.Router.EventQueueBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("event-queue-bytes %d: must be at least 1024", o.Router.EventQueueBytes))
	}
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
	if o.Router.RateMsgs == 0 {
		o.Router.RateMsgs = -1
	}
	if o.Router.RateBytes == 0 {
		o.Router.RateBytes = -1
	}
	if o.Router.RateKickAfter == 0 {
		o.Router.RateKickAfter = -1
	}
	switch {
	case o.Router.TokenGrace < 0 && o.Router.TokenGrace != -1: // -1: set by an earlier validate
		errs = append(errs, fmt.Errorf("token-grace %v: must not be negative", o.Router.TokenGrace))
	case o.Router.TokenGrace == 0:
		o.Router.TokenGrace = -1 // the router's "close at exp"
	}
	if o.Router.RateMsgs < 0 && o.Router.RateMsgs != -1 || o.Router.RateBytes < 0 && o.Router.RateBytes != -1 {
		errs = append(errs, errors.New("rate-msgs and rate-bytes must not be negative"))
	}
	if o.jwtSecret == "" {
		o.jwtSecret = os.Getenv("WSGATE_JWT_SECRET")
	}
	o.Router.Auth.Secret = []byte(o.jwtSecret)
	if o.jwtPublicKey != "" {
		pem, err := os.ReadFile(o.jwtPublicKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt-public-key: %w", err))
		}
		o.Router.Auth.PublicKeyPEM = pem
	}
	routerMode := !o.Echo && !o.Broadcast
	if routerMode && !o.Dev && o.jwtSecret == "" && o.jwtPublicKey == "" {
		errs = append(errs, errors.New("no way to verify tokens: set -jwt-secret (or $WSGATE_JWT_SECRET) or -jwt-public-key, or use -dev"))
	}
	if o.GOGC < 1 {
		errs = append(errs, fmt.Errorf("gogc %d: must be at least 1", o.GOGC))
	}
	if o.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("memory-limit %d: must not be negative", o.MemoryLimit))
	}
	if o.DrainTime < 0 {
		errs = append(errs, fmt.Errorf("drain-time %v: must not be negative", o.DrainTime))
	}
	if err := o.logLevel.UnmarshalText([]byte(o.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", o.LogLevel))
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", o.LogFormat))
	}
	if o.APIKey == "" {
		o.APIKey = os.Getenv("WSGATE_API_KEY")
	}
	if o.NATSURL != "" && (o.NATSCluster != "" || o.NATSRoutes != "") {
		errs = append(errs, errors.New("-nats-cluster and -nats-routes configure the embedded server; they do not combine with -nats-url"))
	}
	errs = append(errs, o.checkAddresses()...)
	if o.NATSPrefix == "" || strings.ContainsAny(o.NATSPrefix, " *>") {
		errs = append(errs, fmt.Errorf("nats-prefix %q: want a subject token such as gw", o.NATSPrefix))
	}
	if o.HistoryMaxMsgs < 1 {
		errs = append(errs, fmt.Errorf("history-max-msgs %d: must be at least 1", o.HistoryMaxMsgs))
	}
	if o.NATSUserInterest != "exact" && o.NATSUserInterest != "shared" {
		errs = append(errs, fmt.Errorf("nats-user-interest %q: want exact or shared", o.NATSUserInterest))
	}
	if o.NATSPendingBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("nats-pending-bytes %d: must be at least 1024", o.NATSPendingBytes))
	}
	if o.HistoryFillWorkers < 1 {
		errs = append(errs, fmt.Errorf("history-fill-workers %d: must be at least 1", o.HistoryFillWorkers))
	}
	if o.HistoryFillTimeout <= 0 {
		errs = append(errs, fmt.Errorf("history-fill-timeout %v: must be positive", o.HistoryFillTimeout))
	}
	if o.HistoryParkBytes < 1 {
		errs = append(errs, fmt.Errorf("history-park-bytes %d: must be positive", o.HistoryParkBytes))
	}
	if o.HistoryTTL < 0 {
		errs = append(errs, fmt.Errorf("history-ttl %v: must not be negative", o.HistoryTTL))
	}
	if o.Router.RPCTimeout <= 0 {
		errs = append(errs, fmt.Errorf("rpc-timeout %v: must be positive", o.Router.RPCTimeout))
	}
	if o.Router.RPCMaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("rpc-max-inflight %d: must be at least 1", o.Router.RPCMaxInFlight))
	}
	if o.Router.PresenceMaxUsers < 1 || o.Router.PresenceMaxUsers > router.MaxPresenceMaxUsers {
		errs = append(errs, fmt.Errorf("presence-max-users %d: want 1-%d (a presence answer must fit in one NATS message)", o.Router.PresenceMaxUsers, router.MaxPresenceMaxUsers))
	}
	if o.PresenceWindow <= 0 {
		errs = append(errs, fmt.Errorf("presence-window %v: must be positive", o.PresenceWindow))
	}
	if o.InstanceTimeout <= 0 {
		errs = append(errs, fmt.Errorf("instance-timeout %v: must be positive", o.InstanceTimeout))
	}
	if o.PublishConfirmTimeout <= 0 {
		errs = append(errs, fmt.Errorf("publish-confirm-timeout %v: must be positive", o.PublishConfirmTimeout))
	}
	if o.PublishQueueBytes <= 0 {
		errs = append(errs, fmt.Errorf("publish-queue-bytes %d: must be positive", o.PublishQueueBytes))
	}
	if o.History && o.DataDir == "" && o.NATSURL == "" {
		errs = append(errs, errors.New("-history with the embedded NATS server needs -data-dir"))
	}
	if o.HistoryReplica < 1 || o.HistoryReplica > 5 {
		errs = append(errs, fmt.Errorf("history-replicas %d: want 1 to 5", o.HistoryReplica))
	}
	if o.History && o.NATSURL == "" && o.NATSCluster != "" && o.Router.InstanceID == "" {
		errs = append(errs, errors.New("-history with -nats-cluster needs -instance-id: JetStream in a cluster knows its servers by name, which must be unique and the same after a restart"))
	}
	if o.History && o.NATSURL == "" && o.NATSCluster == "" && o.HistoryReplica > 1 {
		errs = append(errs, fmt.Errorf("history-replicas %d: a lone embedded NATS server holds one copy; cluster it (-nats-cluster) or use -nats-url", o.HistoryReplica))
	}
	o.Router.History = o.History
	if o.Echo && o.Broadcast {
		errs = append(errs, errors.New("-echo and -broadcast are exclusive"))
	}
	o.Engine.Normalize()
	if err := o.Engine.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkAddresses checks the form of every address flag, so a typo is
// reported before anything starts (binding them is preflight's part).
func (o *options) checkAddresses() []error {
	var errs []error
	listen := func(name, addr string) {
		if _, _, err := natsbp.SplitListenAddr(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	listen("addr", o.Engine.Addr)
	if o.AdminAddr != "" {
		listen("admin-addr", o.AdminAddr)
	}
	if o.NATSURL != "" {
		for _, u := range splitList(o.NATSURL) {
			if err := checkNATSURL(u); err != nil {
				errs = append(errs, fmt.Errorf("nats-url %q: %w", u, err))
			}
		}
		return errs
	}
	if o.NATSListen == "-" {
		if o.NATSCluster != "" {
			errs = append(errs, errors.New("-nats-listen - (no client port) cannot be combined with -nats-cluster: the embedded NATS server opens its route port only after its client port; use -nats-listen 127.0.0.1:0 for a private one"))
		}
	} else {
		listen("nats-listen", o.NATSListen)
	}
	if o.NATSCluster != "" {
		listen("nats-cluster", o.NATSCluster)
	}
	routes := splitList(o.NATSRoutes)
	if len(routes) > 0 && o.NATSCluster == "" {
		errs = append(errs, errors.New("-nats-routes needs -nats-cluster (this server's route listen address)"))
	}
	for _, r := range routes {
		if _, err := natsbp.ParseRouteURL(r); err != nil {
			errs = append(errs, fmt.Errorf("nats-routes: %w", err))
		}
	}
	return errs
}

// checkNATSURL accepts what nats.go accepts: [scheme://][user@]host[:port]
// with scheme nats, tls, ws or wss.
func checkNATSURL(s string) error {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats, tls, ws or wss", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", p)
		}
	}
	return nil
}

// embeddedOptions is the embedded NATS server the flags describe.
func (o *options) embeddedOptions(log *slog.Logger) natsbp.EmbeddedOptions {
	return natsbp.EmbeddedOptions{Listen: o.NATSListen, ClusterListen: o.NATSCluster, Routes: splitList(o.NATSRoutes),
		ServerName: o.Router.InstanceID, JetStream: o.History, StoreDir: o.DataDir, Logger: log}
}

// preflight checks, before anything starts, what would otherwise fail
// half-way through startup: every listen address can be bound (bound and
// closed again), and with -history the embedded server's -data-dir is a
// writable directory (created if missing). Echo and broadcast modes start
// no NATS, so only their listeners are checked.
func (o *options) preflight() error {
	errs := []error{natsbp.CheckListen("addr", o.Engine.Addr)}
	if o.AdminAddr != "" {
		errs = append(errs, natsbp.CheckListen("admin-addr", o.AdminAddr))
	}
	if !o.Echo && !o.Broadcast && o.NATSURL == "" {
		errs = append(errs, o.embeddedOptions(nil).Preflight())
	}
	return errors.Join(errs...)
}
