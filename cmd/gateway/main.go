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
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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
	log := slog.New(slog.NewTextHandler(stderr, nil))
	debug.SetGCPercent(o.GOGC)
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
	}

	var h engine.Handler
	var rt *router.Router
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
		bp, ns, err := startBackplane(&o, log)
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

	var adm *admin
	if o.AdminAddr != "" {
		adm, err = newAdmin(o.AdminAddr, rt, o.APIKey, eng.Done())
		if err != nil {
			log.Error("admin listen failed", "err", err)
			_ = eng.Stop(context.Background())
			return 1
		}
		log.Info("admin listening", "addr", o.AdminAddr)
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case <-eng.Done():
		log.Error("event loops ended unexpectedly")
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		<-sig
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	if adm != nil {
		adm.draining.Store(true)
		defer func() { _ = adm.srv.Shutdown(ctx) }()
	}
	if err := eng.Stop(ctx); err != nil {
		log.Error("stop failed", "err", err)
		return 1
	}
	if rt != nil {
		_ = rt.Close()
	}
	return 0
}

// startBackplane connects the router to NATS: an external server or
// cluster with -nats-url, else an embedded server (returned, to shut down).
func startBackplane(o *options, log *slog.Logger) (*natsbp.Backplane, *server.Server, error) {
	bo := natsbp.Options{Prefix: o.NATSPrefix, Logger: log}
	var ns *server.Server
	if o.NATSURL != "" {
		for _, u := range strings.Split(o.NATSURL, ",") {
			bo.URLs = append(bo.URLs, strings.TrimSpace(u))
		}
	} else {
		eo := natsbp.EmbeddedOptions{Listen: o.NATSListen, ClusterListen: o.NATSCluster, ServerName: o.Router.InstanceID}
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
