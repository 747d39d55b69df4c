// Command gateway is the wsgate WebSocket gateway. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
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
		var err error
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

	var admin *http.Server
	if o.AdminAddr != "" {
		admin, err = startAdmin(o.AdminAddr, eng)
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
	if admin != nil {
		_ = admin.Shutdown(ctx)
	}
	if err := eng.Stop(ctx); err != nil {
		log.Error("stop failed", "err", err)
		return 1
	}
	return 0
}

// startAdmin serves the admin endpoints on addr.
func startAdmin(addr string, eng *engine.Engine) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-eng.Done():
			http.Error(w, "not accepting", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
