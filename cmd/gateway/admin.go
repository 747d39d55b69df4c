package main

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/router"
	"github.com/wsgate/wsgate/wire"
)

// admin serves the admin port: health, readiness, metrics, the demo page,
// the service publish API and, with -pprof, the profiler.
type admin struct {
	srv      *http.Server
	ln       net.Listener
	router   *router.Router // nil in echo and broadcast modes
	apiKey   string
	draining *atomic.Bool // set when the gateway stops accepting
	stopped  <-chan struct{}
}

// adminConfig is what the admin port serves.
type adminConfig struct {
	Addr    string
	Router  *router.Router // nil in echo and broadcast modes
	APIKey  string
	Stopped <-chan struct{} // closed when the event loops end
	// Draining is set on SIGTERM/SIGINT: /readyz answers 503 from then on.
	Draining *atomic.Bool
	Metrics  http.Handler // GET /metrics; nil: none
	PProf    bool         // serve /debug/pprof/
	Demo     demoConfig
}

func newAdmin(cfg adminConfig) (*admin, error) {
	a := &admin{router: cfg.Router, apiKey: cfg.APIKey, stopped: cfg.Stopped, draining: cfg.Draining}
	if a.draining == nil {
		a.draining = new(atomic.Bool)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("POST /api/publish", a.publish)
	a.registerControl(mux) // control API (control.go)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	registerDemo(mux, cfg.Demo)
	if cfg.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	a.ln = ln
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

// Addr is the bound admin address (useful with port 0).
func (a *admin) Addr() string { return a.ln.Addr().String() }

// readyz is 200 only while accepting and, with a backplane, while it is connected.
func (a *admin) readyz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-a.stopped:
		http.Error(w, "not accepting: stopped", http.StatusServiceUnavailable)
		return
	default:
	}
	if a.draining.Load() {
		http.Error(w, "not accepting: draining", http.StatusServiceUnavailable)
		return
	}
	if a.router != nil && !a.router.Ready() {
		http.Error(w, "backplane disconnected", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// publishRequest is the body of POST /api/publish (PROTOCOL.md section 5).
type publishRequest struct {
	Room     *string         `json:"room"`
	User     *string         `json:"user"`
	Channel  *string         `json:"channel"`
	All      *bool           `json:"all"`
	Data     json.RawMessage `json:"data"`
	From     string          `json:"from"`
	Priority string          `json:"priority"`
	Filter   json.RawMessage `json:"filter"`
}

func (a *admin) publish(w http.ResponseWriter, r *http.Request) {
	if a.router == nil {
		http.Error(w, "publishing needs router mode (not -echo or -broadcast)", http.StatusNotFound)
		return
	}
	if a.apiKey == "" {
		http.Error(w, "publish API disabled: start the gateway with -api-key", http.StatusForbidden)
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.apiKey)) != 1 {
		http.Error(w, "bad or missing API key", http.StatusUnauthorized)
		return
	}
	var req publishRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad JSON body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var kind router.Kind
	var name string
	n := 0
	if req.Room != nil {
		kind, name, n = router.KindRoom, *req.Room, n+1
	}
	if req.User != nil {
		kind, name, n = router.KindUser, *req.User, n+1
	}
	if req.Channel != nil {
		kind, name, n = router.KindChannel, *req.Channel, n+1
	}
	if req.All != nil && *req.All {
		kind, n = router.KindAll, n+1
	}
	if n != 1 {
		http.Error(w, `give exactly one of "room", "user", "channel" or "all": true`, http.StatusBadRequest)
		return
	}
	if len(req.Data) == 0 {
		http.Error(w, `missing "data"`, http.StatusBadRequest)
		return
	}
	var prio wire.Priority
	switch req.Priority {
	case "", "normal":
	case "high":
		prio = wire.PriorityHigh
	case "low":
		prio = wire.PriorityLow
	default:
		http.Error(w, `priority must be "high", "normal" or "low"`, http.StatusBadRequest)
		return
	}
	if err := a.router.PublishService(kind, name, req.Data, req.From, prio, req.Filter); err != nil {
		status := http.StatusBadRequest
		if err == router.ErrUnavailable {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "accepted\n")
}
