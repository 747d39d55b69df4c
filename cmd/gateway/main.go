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
	"strings"
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
	// drains right after it instead of killing the process.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	log := o.logger(stderr)
	slog.SetDefault(log)
	debug.SetGCPercent(o.GOGC)
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
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
		bp, ns, err = startBackplane(&o, log)
		if err != nil {
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

// startBackplane connects the router to NATS: an external server or
// cluster with -nats-url, else an embedded server (returned, to shut down).
func startBackplane(o *options, log *slog.Logger) (*natsbp.Backplane, *server.Server, error) {
	bo := natsbp.Options{Prefix: o.NATSPrefix, Logger: log, PresenceWindow: o.PresenceWindow,
		InstanceTimeout: o.InstanceTimeout, ConfirmTimeout: o.PublishConfirmTimeout, PublishQueueBytes: o.PublishQueueBytes,
		PendingBytes: o.NATSPendingBytes}
	if o.History {
		bo.History = natsbp.HistoryOptions{Enabled: true, MaxMsgs: o.HistoryMaxMsgs, MaxAge: o.HistoryTTL,
			GapFillWorkers: o.HistoryFillWorkers, GapFillTimeout: o.HistoryFillTimeout, GapParkBytes: o.HistoryParkBytes}
		if o.HistoryTTL == 0 {
			bo.History.MaxAge = -1 // the flag's 0 means no age limit
		}
	}
	var ns *server.Server
	if o.NATSURL != "" {
		for _, u := range strings.Split(o.NATSURL, ",") {
			bo.URLs = append(bo.URLs, strings.TrimSpace(u))
		}
	} else {
		eo := natsbp.EmbeddedOptions{Listen: o.NATSListen, ClusterListen: o.NATSCluster, ServerName: o.Router.InstanceID,
			JetStream: o.History, StoreDir: o.DataDir}
		for _, r := range strings.Split(o.NATSRoutes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				eo.Routes = append(eo.Routes, r)
			}
		}
		var err error
		if ns, err = natsbp.StartEmbedded(eo); err != nil {
			return nil, nil, err
		}
		bo.Server = ns
		log.Info("embedded NATS running", "client", ns.ClientURL(), "cluster", o.NATSCluster)
	}
	return natsbp.New(bo), ns, nil
}
