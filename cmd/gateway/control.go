package main

// The control API on the admin port (PROTOCOL.md section 11): the HTTP face
// of router.Router.Control. The same operations arrive as NATS requests on
// <prefix>.ctl.<op> (router/natsbp/control.go).

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/router"
)

// maxControlBody bounds a control request body.
const maxControlBody = 64 << 10

// registerControl adds /api/<op> for every control operation.
func (a *admin) registerControl(mux *http.ServeMux) {
	for _, op := range []string{router.CtlDisconnect, router.CtlSubscribe, router.CtlUnsubscribe} {
		mux.HandleFunc("POST /api/"+op, func(w http.ResponseWriter, r *http.Request) { a.control(w, r, op) })
	}
	for _, op := range []string{router.CtlPresence, router.CtlPresenceStats, router.CtlHistory, router.CtlInfo} {
		mux.HandleFunc("GET /api/"+op, func(w http.ResponseWriter, r *http.Request) { a.control(w, r, op) })
	}
}

// checkKey answers 403 without -api-key and 401 for a bad or missing key;
// it reports whether the request may go on.
func (a *admin) checkKey(w http.ResponseWriter, r *http.Request, op string) bool {
	if a.apiKey == "" {
		a.router.NoteControl(op, router.CtlForbidden)
		http.Error(w, "control API disabled: start the gateway with -api-key", http.StatusForbidden)
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.apiKey)) != 1 {
		a.router.NoteControl(op, router.CtlUnauthorized)
		http.Error(w, "bad or missing API key", http.StatusUnauthorized)
		return false
	}
	return true
}

func (a *admin) control(w http.ResponseWriter, r *http.Request, op string) {
	if a.router == nil {
		http.Error(w, "the control API needs router mode (not -echo or -broadcast)", http.StatusNotFound)
		return
	}
	if !a.checkKey(w, r, op) {
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
		if err != nil {
			a.router.NoteControl(op, router.CtlBadRequest)
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		var err error
		if body, err = queryBody(r, op); err != nil {
			a.router.NoteControl(op, router.CtlBadRequest)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	ans, err := a.router.Control(op, body)
	if err != nil {
		status := http.StatusServiceUnavailable
		var ce *router.ControlError
		if errors.As(err, &ce) {
			status = ce.Status
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(ans, '\n'))
}

// queryBody turns a GET operation's query (room, since, limit) into the
// JSON body the NATS form of the operation takes; anything else is refused.
func queryBody(r *http.Request, op string) ([]byte, error) {
	var req router.ControlRequest
	for key, vals := range r.URL.Query() {
		if len(vals) != 1 {
			return nil, errors.New("query parameter " + strconv.Quote(key) + " given more than once")
		}
		v := vals[0]
		switch {
		case key == "room" && op != router.CtlInfo:
			req.Room = v
			if v == "" {
				return nil, errors.New(`"room" is empty`)
			}
		case key == "since" && op == router.CtlHistory:
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, errors.New(`"since": want a sequence number (0 or more)`)
			}
			req.Since = n
		case key == "limit" && op == router.CtlHistory:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, errors.New(`"limit": want a count (1 or more)`)
			}
			req.Limit = n
		default:
			return nil, errors.New("unknown query parameter " + strconv.Quote(key) + " for " + op)
		}
	}
	return json.Marshal(req)
}

// controlCollector exports the control operations' counts.
type controlCollector struct {
	rt   *router.Router
	desc *prometheus.Desc
}

func newControlCollector(rt *router.Router) controlCollector {
	return controlCollector{rt: rt, desc: prometheus.NewDesc("wsgate_control_operations_total",
		"Control API operations (HTTP and NATS), by operation and outcome (ok, bad_request, unauthorized, forbidden, unavailable).",
		[]string{"op", "outcome"}, nil)}
}

func (c controlCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c controlCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.rt.ControlCounts()
	for i, op := range router.ControlOps {
		for j, outcome := range router.ControlOutcomes {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(counts[i][j]), op, outcome)
		}
	}
}
