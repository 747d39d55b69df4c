// Command gateway is the wsgate WebSocket gateway. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
	"github.com/wsgate/wsgate/router/natsbp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the exit, for tests: 0 on a clean stop, 2 on bad flags,
// 1 on a runtime failure.
func run(args []string, stderr *os.File) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Stdout, stderr)
	}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	bindFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := o.finish(); err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 2
	}
	// Signals are caught from the start, so one that comes during startup
	// drains right after it instead of killing the process; while startup
	// waits (for NATS, for the JetStream meta leader) it also ends the wait.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	startCtx, endStartup := startupContext()
	defer endStartup()

	log := o.logger(stderr)
	slog.SetDefault(log)
	debug.SetGCPercent(o.GOGC)
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
	}
	// Everything that can be checked before starting is: ports bindable,
	// data directory writable (docs/operations.md, "Startup checks").
	if err := o.preflight(); err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}

	var h engine.Handler
	var rt *router.Router
	var bp *natsbp.Backplane
	mode := "router"
	switch {
	case o.Echo:
		h, mode = engine.EchoHandler{}, "echo"
	case o.Broadcast:
		h, mode = engine.BroadcastHandler{}, "broadcast"
	default:
		if o.Dev && len(o.Router.Auth.Secret) == 0 && len(o.Router.Auth.PublicKeyPEM) == 0 {
			o.Router.Auth.Secret = []byte(devSecret())
			printDevBanner(stderr, string(o.Router.Auth.Secret), o.Engine.Addr, o.Engine.WSPath)
		}
		var ns *server.Server
		var err error
		bp, ns, err = startBackplane(startCtx, &o, log)
		if err != nil {
			if startCtx.Err() != nil {
				// A stop requested before anything served is a clean stop.
				fmt.Fprintf(stderr, "gateway: startup interrupted, exiting: %v\n", err)
				return 0
			}
			fmt.Fprintf(stderr, "gateway: %v\n", err)
			return 1
		}
		if ns != nil {
			defer ns.Shutdown()
		}
		o.Router.Backplane = bp
		if rt, err = router.New(o.Router); err != nil {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
			return 2
		}
		h = rt
	}
	eng, err := engine.New(o.Engine, h)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 2
	}
	if rt != nil {
		if err := rt.Bind(eng); err != nil {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
			return 1
		}
	}
	if err := eng.Start(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	log.Info("gateway listening", "addr", eng.Addr(), "path", o.Engine.WSPath, "mode", mode, "loops", o.Engine.Loops)

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	lag := newLagMonitor(eng, time.Second)
	go lag.run(bg)

	var adm *admin
	var draining atomic.Bool // /readyz and wsgate_draining
	if o.AdminAddr != "" {
		gc := newGatewayCollector(eng, rt, bp, lag, draining.Load, log)
		reg := newRegistry(gc)
		adm, err = newAdmin(adminConfig{
			Addr: o.AdminAddr, Router: rt, APIKey: o.APIKey, Stopped: eng.Done(), Draining: &draining,
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
			PProf:   o.PProf,
			Demo:    demoConfig{EngineAddr: eng.Addr(), WSPath: o.Engine.WSPath, Mode: mode},
		})
		if err != nil {
			log.Error("admin listen failed", "err", err)
			_ = eng.Stop(context.Background())
			return 1
		}
		log.Info("admin listening", "addr", adm.Addr(), "pprof", o.PProf)
	}

	endStartup()
	select {
	case s := <-sig:
		// Not ready first, so a load balancer moves away while we drain.
		draining.Store(true)
		log.Info("stopping", "signal", s.String(), "drain_time", o.DrainTime)
	case <-eng.Done():
		log.Error("event loops ended unexpectedly")
		return 1
	}
	go func() {
		s := <-sig
		log.Warn("second signal: exiting now without draining", "signal", s.String())
		os.Exit(1)
	}()

	// Drain: reconnect notices and 1001 closes spread over -drain-time, then
	// the closing handshakes (bounded by -close-timeout) and a margin.
	dctx, dcancel := context.WithTimeout(context.Background(), o.DrainTime+o.Engine.CloseTimeout+time.Second)
	(&drainer{eng: eng, rt: rt, span: o.DrainTime, log: log}).run(dctx)
	dcancel()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopBG()
	if err := eng.Stop(ctx); err != nil {
		log.Error("stop failed", "err", err)
		return 1
	}
	if rt != nil {
		_ = rt.Close()
	}
	if adm != nil {
		_ = adm.srv.Shutdown(ctx)
	}
	log.Info("stopped")
	return 0
}

// startupContext is cancelled, with the signal as its cause, by a SIGINT
// or SIGTERM that arrives before end is called (the end of startup).
func startupContext() (ctx context.Context, end func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			cancel(fmt.Errorf("%v during startup", s))
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
		})
	}
}

// startBackplane connects the router to NATS: an external server or
// cluster with -nats-url, else an embedded server (returned, to shut down),
// waited for until it is ready or ctx ends.
func startBackplane(ctx context.Context, o *options, log *slog.Logger) (*natsbp.Backplane, *server.Server, error) {
	bo := natsbp.Options{Prefix: o.NATSPrefix, Logger: log, PresenceWindow: o.PresenceWindow,
		InstanceTimeout: o.InstanceTimeout, ConfirmTimeout: o.PublishConfirmTimeout, PublishQueueBytes: o.PublishQueueBytes,
		PendingBytes: o.NATSPendingBytes, SharedUserInterest: o.NATSUserInterest == "shared"}
	if o.History {
		bo.History = natsbp.HistoryOptions{Enabled: true, MaxMsgs: o.HistoryMaxMsgs, MaxAge: o.HistoryTTL, Replicas: o.HistoryReplica,
			GapFillWorkers: o.HistoryFillWorkers, GapFillTimeout: o.HistoryFillTimeout, GapParkBytes: o.HistoryParkBytes}
		if o.HistoryTTL == 0 {
			bo.History.MaxAge = -1 // the flag's 0 means no age limit
		}
	}
	var ns *server.Server
	if o.NATSURL != "" {
		bo.URLs = splitList(o.NATSURL)
	} else {
		eo := o.embeddedOptions(log)
		var err error
		if ns, err = natsbp.StartEmbeddedContext(ctx, eo); err != nil {
			return nil, nil, err
		}
		bo.Server = ns
		log.Info("embedded NATS running", "client", ns.ClientURL(), "cluster", o.NATSCluster)
	}
	return natsbp.New(bo), ns, nil
}
