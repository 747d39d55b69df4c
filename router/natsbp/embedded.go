package natsbp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures the NATS server a gateway runs in-process when
// no external NATS is given, so one instance needs no setup.
type EmbeddedOptions struct {
	// Listen is the client address services connect to (default
	// "127.0.0.1:4222"; "-" disables the listener: in-process only, which
	// cannot be combined with ClusterListen, see StartEmbeddedContext).
	Listen string
	// ClusterListen is the route address for other gateways' embedded
	// servers ("" = no cluster).
	ClusterListen string
	// Routes are nats-route:// URLs of other embedded servers.
	Routes []string
	// ClusterName names the cluster (default "wsgate").
	ClusterName string
	// ServerName must be unique in a cluster and, with JetStream in a
	// cluster, stable across restarts (JetStream knows its peers by it).
	// Default: "wsgate-<port>" alone, the server's random id in a cluster;
	// JetStream in a cluster requires it.
	ServerName string
	// JetStream enables history; StoreDir is where it keeps files.
	JetStream bool
	StoreDir  string
	// Logger receives the server's warnings and errors (nil = discarded).
	Logger *slog.Logger
}

// DefaultEmbeddedListen is the client address of the embedded server when
// EmbeddedOptions.Listen is empty.
const DefaultEmbeddedListen = "127.0.0.1:4222"

// embeddedShutdownWait bounds the Shutdown of a server that failed to
// start: nats-server v2.15 can leave its route goroutine waiting for a
// client listener that never came, and Shutdown waits for it.
const embeddedShutdownWait = 2 * time.Second

// StartEmbedded starts a NATS server and waits at most 10s until it accepts
// connections (and, with JetStream in a cluster, knows its meta leader).
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return StartEmbeddedContext(ctx, o)
}

// StartEmbeddedContext starts a NATS server and waits until it accepts
// connections and, with JetStream in a cluster, until the JetStream meta
// group has a leader (stream creation fails before that). It returns as
// soon as the server reports a fatal error (its own words: a port in use,
// a store it cannot create) or ctx ends (a signal, a deadline); the error
// then says what it was still waiting for.
func StartEmbeddedContext(ctx context.Context, o EmbeddedOptions) (*server.Server, error) {
	opts, err := o.serverOptions()
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsbp: embedded server: %w", err)
	}
	logs := &embeddedLog{log: o.Logger, fatal: make(chan string, 1)}
	s.SetLoggerV2(logs, false, false, false)
	go s.Start()

	fail := func(err error) (*server.Server, error) {
		shutdownBounded(s)
		return nil, err
	}
	stage := "client listener"
	if o.Listen == "-" {
		stage = "startup"
	}
	if o.ClusterListen != "" {
		stage += " and route listener"
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	// ReadyForConnections(50ms) checks the listeners and sleeps 25ms; the
	// loop around it watches the server's fatal errors and ctx.
	for !s.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-logs.fatal:
			return fail(fmt.Errorf("natsbp: embedded server: %s", msg))
		case <-ctx.Done():
			return fail(fmt.Errorf("natsbp: embedded server: waiting for its %s: %w", stage, context.Cause(ctx)))
		default:
		}
	}
	if !o.JetStream {
		return s, nil
	}
	waitingLogged := false
	for !s.JetStreamEnabled() || !s.JetStreamIsCurrent() {
		if !waitingLogged && o.Logger != nil && s.JetStreamIsClustered() {
			o.Logger.Info("embedded NATS waiting for the JetStream meta leader (needs a majority of the cluster's -history nodes)",
				"server", s.Name(), "routes", strings.Join(o.Routes, ","))
			waitingLogged = true
		}
		select {
		case msg := <-logs.fatal:
			return fail(fmt.Errorf("natsbp: embedded server: %s", msg))
		case <-ctx.Done():
			what := "JetStream"
			if s.JetStreamIsClustered() {
				what = "JetStream meta leader (a majority of the cluster's JetStream servers must be up and routed)"
			}
			return fail(fmt.Errorf("natsbp: embedded server: waiting for its %s: %w", what, context.Cause(ctx)))
		case <-tick.C:
		}
	}
	return s, nil
}

// serverOptions checks o and translates it into nats-server options.
func (o *EmbeddedOptions) serverOptions() (*server.Options, error) {
	opts := &server.Options{
		NoSigs:       true,
		NoLog:        true,
		ServerName:   o.ServerName,
		JetStream:    o.JetStream,
		StoreDir:     o.StoreDir,
		MaxPayload:   8 << 20,
		PingInterval: 20 * time.Second,
	}
	if o.Listen == "" {
		o.Listen = DefaultEmbeddedListen
	}
	if o.Listen == "-" {
		if o.ClusterListen != "" {
			// nats-server v2.15 starts its route listener only after its
			// client listener is up; with none it would wait forever.
			return nil, errors.New("natsbp: nats-listen - (no client listener) cannot be combined with nats-cluster: the embedded server opens its route port only after its client port; use a loopback client address such as 127.0.0.1:0")
		}
		opts.DontListen = true
	} else {
		host, port, err := SplitListenAddr(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsbp: nats-listen %q: %w", o.Listen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	if o.ClusterListen != "" {
		host, port, err := SplitListenAddr(o.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("natsbp: nats-cluster %q: %w", o.ClusterListen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Cluster.Host, opts.Cluster.Port = host, port
		opts.Cluster.Name = o.ClusterName
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "wsgate"
		}
		for _, r := range o.Routes {
			u, err := ParseRouteURL(r)
			if err != nil {
				return nil, fmt.Errorf("natsbp: nats-routes: %w", err)
			}
			opts.Routes = append(opts.Routes, u)
		}
		if o.JetStream && o.ServerName == "" {
			return nil, errors.New("natsbp: JetStream in an embedded cluster needs a stable, unique server name (the gateway's -instance-id)")
		}
	} else if len(o.Routes) > 0 {
		return nil, errors.New("natsbp: nats-routes needs nats-cluster (the route listen address)")
	}
	if o.JetStream && o.StoreDir == "" {
		return nil, errors.New("natsbp: JetStream needs a store directory (-data-dir)")
	}
	if opts.ServerName == "" && o.ClusterListen == "" {
		// A readable name for a lone server; in a cluster the default is
		// the server's random id, as equal ports on every host would give
		// every server the same derived name.
		opts.ServerName = "wsgate-" + strconv.Itoa(opts.Port)
	}
	return opts, nil
}

// Preflight checks what StartEmbeddedContext would otherwise find out only
// from inside the server: that the client and route ports can be bound
// (bound and closed again here) and, with JetStream, that StoreDir is a
// writable directory (created if missing). Each error names the option and
// the cause, e.g. "nats-listen 127.0.0.1:4222: address already in use".
func (o EmbeddedOptions) Preflight() error {
	var errs []error
	if o.Listen == "" {
		o.Listen = DefaultEmbeddedListen
	}
	if o.Listen != "-" {
		errs = append(errs, CheckListen("nats-listen", o.Listen))
	}
	if o.ClusterListen != "" {
		errs = append(errs, CheckListen("nats-cluster", o.ClusterListen))
	}
	if o.JetStream && o.StoreDir != "" {
		errs = append(errs, CheckWritableDir("data-dir", o.StoreDir))
	}
	return errors.Join(errs...)
}

// SplitListenAddr parses a host:port listen address (the host may be empty:
// every interface; the port 0: any free port).
func SplitListenAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port: %w", err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// ParseRouteURL parses one nats-route://host:port URL.
func ParseRouteURL(r string) (*url.URL, error) {
	u, err := url.Parse(r)
	if err != nil || u.Scheme != "nats-route" || u.Host == "" {
		return nil, fmt.Errorf("%q: want nats-route://host:port", r)
	}
	if _, _, err := SplitListenAddr(u.Host); err != nil || u.Port() == "" || u.Port() == "0" {
		return nil, fmt.Errorf("%q: want nats-route://host:port", r)
	}
	return u, nil
}

// CheckListen binds addr and closes it again, so a port in use or an
// address not on this host is reported before anything starts. Port 0
// checks only the host. name is the flag, for the message.
func CheckListen(name, addr string) error {
	if _, _, err := SplitListenAddr(addr); err != nil {
		return fmt.Errorf("%s %q: %w", name, addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = se.Err
		}
		return fmt.Errorf("%s %s: %w", name, addr, err)
	}
	return l.Close()
}

// CheckWritableDir creates dir when missing and proves it writable by
// creating and removing a file in it.
func CheckWritableDir(name, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%s %s: %w", name, dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".wsgate-write-check-*")
	if err != nil {
		return fmt.Errorf("%s %s: not writable: %w", name, dir, unwrapPath(err))
	}
	_ = f.Close()
	return os.Remove(filepath.Clean(f.Name()))
}

// unwrapPath keeps the cause of a *PathError (the path is in our message).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// shutdownBounded shuts s down, waiting at most embeddedShutdownWait (see
// there): a failed start must not hang the caller.
func shutdownBounded(s *server.Server) {
	done := make(chan struct{})
	go func() {
		s.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(embeddedShutdownWait):
	}
}

// embeddedLog is the embedded server's logger: warnings and errors go to
// the gateway's log, and the first fatal error ends StartEmbeddedContext's
// wait with the server's own words.
type embeddedLog struct {
	log   *slog.Logger
	once  sync.Once
	fatal chan string
}

func (l *embeddedLog) Noticef(string, ...any) {}
func (l *embeddedLog) Debugf(string, ...any)  {}
func (l *embeddedLog) Tracef(string, ...any)  {}

func (l *embeddedLog) Warnf(format string, v ...any) {
	if l.log != nil {
		l.log.Warn("embedded NATS: " + fmt.Sprintf(format, v...))
	}
}

func (l *embeddedLog) Errorf(format string, v ...any) {
	if l.log != nil {
		l.log.Error("embedded NATS: " + fmt.Sprintf(format, v...))
	}
}

func (l *embeddedLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.log != nil {
		l.log.Error("embedded NATS: fatal: " + msg)
	}
	l.once.Do(func() { l.fatal <- msg })
}
