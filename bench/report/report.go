// Package report holds benchmark results: the JSON schema, the text table,
// the Markdown snippet and hand-written SVG charts.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wsgate/wsgate/bench/hist"
)

// RSSSample is one idle-density point.
type RSSSample struct {
	Conns     int   `json:"conns"`
	ServerRSS int64 `json:"server_rss"`
	ClientRSS int64 `json:"client_rss"`
}

// Result is one scenario against one target.
type Result struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	Status   string `json:"status"` // ok | error | skipped
	// Round is the repetition this result belongs to (wsbench compare
	// -repeat N: 1..N); 0 in a single run.
	Round    int              `json:"round,omitempty"`
	Error    string           `json:"error,omitempty"`
	Started  time.Time        `json:"started"`
	WallS    float64          `json:"wall_s"`
	Params   map[string]any   `json:"params,omitempty"`
	Conns    int              `json:"conns,omitempty"`
	Workers  int              `json:"workers,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
	LoadAvg  string           `json:"loadavg,omitempty"` // /proc/loadavg at the start: the machine may be shared
	Failures map[string]int64 `json:"failures,omitempty"`

	// connect storm
	Upgrades       int64         `json:"upgrades,omitempty"`
	UpgradesPerSec float64       `json:"upgrades_per_s,omitempty"`
	ConnectLatency *hist.Summary `json:"connect_latency_ns,omitempty"`

	// message scenarios
	OfferedRate      float64        `json:"offered_rate,omitempty"` // msgs/s sent (publish rate for broadcast)
	SentRate         float64        `json:"sent_rate,omitempty"`
	Sent             int64          `json:"sent,omitempty"`
	Received         int64          `json:"received,omitempty"`
	Expected         int64          `json:"expected,omitempty"`
	Lost             int64          `json:"lost,omitempty"`             // expected - unique received (by seq)
	Duplicates       int64          `json:"duplicates,omitempty"`       // deliveries of a seq the connection already had (not in Received)
	DeliveriesPerSec float64        `json:"deliveries_per_s,omitempty"` // received per second of the window
	Latency          *hist.Summary  `json:"latency_ns,omitempty"`
	LatencyHist      *hist.Snapshot `json:"latency_hist,omitempty"`
	SendLag          *hist.Summary  `json:"send_lag_ns,omitempty"` // actual - intended send time (client health)

	// resources
	ServerCPUSec      float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerMsgUs float64 `json:"server_cpu_per_msg_us,omitempty"` // per received message/delivery
	ServerRSS         int64   `json:"server_rss,omitempty"`
	ClientCPUSec      float64 `json:"client_cpu_s,omitempty"`

	// idle density
	IdleSamples  []RSSSample `json:"idle_samples,omitempty"`
	BaselineRSS  int64       `json:"baseline_rss,omitempty"`
	BytesPerConn float64     `json:"bytes_per_conn,omitempty"`
	// BytesPerConnMarginal is the slope over the non-zero counts only: the
	// first connections also pay one-time costs (pools, per-loop buffers,
	// goroutines of a connect burst) that BytesPerConn spreads over them.
	BytesPerConnMarginal float64 `json:"bytes_per_conn_marginal,omitempty"`
	ClientBytesPerConn   float64 `json:"client_bytes_per_conn,omitempty"`

	// reconnect storm
	ServerDownMs     float64       `json:"server_down_ms,omitempty"`   // kill -> new server accepting
	ReconnectAllMs   float64       `json:"reconnect_all_ms,omitempty"` // kill -> all clients open again
	Reconnected      int64         `json:"reconnected,omitempty"`
	ReconnectLatency *hist.Summary `json:"reconnect_latency_ns,omitempty"` // kill -> each reopen
	DialAttempts     int64         `json:"dial_attempts,omitempty"`

	// router scenarios
	Instances      int              `json:"instances,omitempty"`        // gateway processes serving the run
	SlowConns      int              `json:"slow_conns,omitempty"`       // receivers that stopped reading
	SlowClosed4009 int64            `json:"slow_closed_4009,omitempty"` // slow receivers that saw close 4009
	SlowCloses     map[string]int64 `json:"slow_closes,omitempty"`      // how the slow receivers ended, by reason
	SlowReceived   int64            `json:"slow_received,omitempty"`    // measured messages the slow receivers got
	ServerMetrics  map[string]int64 `json:"server_metrics,omitempty"`   // selected counters from the gateway's /metrics
	ProtocolErrors int64            `json:"protocol_errors,omitempty"`  // error replies from the gateway
	Profiles       []string         `json:"profiles,omitempty"`         // pprof files written (relative to the results dir)
}

// Run is one wsbench invocation.
type Run struct {
	Started time.Time `json:"started"`
	Command string    `json:"command"`
	Host    string    `json:"host"`
	Results []Result  `json:"results"`
}

// WriteJSON writes v indented to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadRun reads a results.json.
func ReadRun(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Dur formats nanoseconds human-readably.
func Dur(ns int64) string {
	d := float64(ns)
	switch {
	case ns == 0:
		return "0"
	case d < 1e3:
		return fmt.Sprintf("%dns", ns)
	case d < 1e6:
		return fmt.Sprintf("%.1fµs", d/1e3)
	case d < 1e9:
		return fmt.Sprintf("%.2fms", d/1e6)
	}
	return fmt.Sprintf("%.2fs", d/1e9)
}

// Bytes formats a byte count.
func Bytes(b float64) string {
	a := math.Abs(b)
	switch {
	case a < 1024:
		return fmt.Sprintf("%.0f B", b)
	case a < 1<<20:
		return fmt.Sprintf("%.1f KiB", b/1024)
	case a < 1<<30:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", b/(1<<30))
}

// Rate formats a per-second rate.
func Rate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM/s", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk/s", r/1e3)
	}
	return fmt.Sprintf("%.0f/s", r)
}

func failStr(f map[string]int64) string {
	if len(f) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, f[k]))
	}
	return strings.Join(parts, ",")
}

// Table writes the human-readable summary of results.
func Table(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	byScen := map[string][]Result{}
	var order []string
	for _, r := range rs {
		if _, ok := byScen[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		byScen[r.Scenario] = append(byScen[r.Scenario], r)
	}
	for _, s := range order {
		fmt.Fprintf(tw, "\n== %s ==\n", s)
		switch s {
		case "connect":
			fmt.Fprintln(tw, "target\tstatus\tconns\tupgrades\tupgrades/s\tconnect p50\tp99\tmax\tfailures\tsrv cpu s")
			for _, r := range byScen[s] {
				l := r.ConnectLatency
				if l == nil {
					l = &hist.Summary{}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\n", label(r), status(r), r.Conns, r.Upgrades,
					Rate(r.UpgradesPerSec), Dur(l.P50), Dur(l.P99), Dur(l.Max), failStr(r.Failures), r.ServerCPUSec)
			}
		case "idle":
			fmt.Fprintln(tw, "target\tstatus\tconns\tbaseline RSS\tbytes/conn\tmarginal\tclient bytes/conn\tsamples (conns:RSS)")
			for _, r := range byScen[s] {
				var sm []string
				for _, x := range r.IdleSamples {
					sm = append(sm, fmt.Sprintf("%d:%s", x.Conns, Bytes(float64(x.ServerRSS))))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", label(r), status(r), r.Conns, Bytes(float64(r.BaselineRSS)),
					Bytes(r.BytesPerConn), Bytes(r.BytesPerConnMarginal), Bytes(r.ClientBytesPerConn), strings.Join(sm, " "))
			}
		case "reconnect":
			fmt.Fprintln(tw, "target\tstatus\tconns\treconnected\tserver down\tall back (from kill)\treopen p50\tp99\tdials\tfailures")
			for _, r := range byScen[s] {
				l := r.ReconnectLatency
				if l == nil {
					l = &hist.Summary{}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0fms\t%.0fms\t%s\t%s\t%d\t%s\n", label(r), status(r), r.Conns, r.Reconnected,
					r.ServerDownMs, r.ReconnectAllMs, Dur(l.P50), Dur(l.P99), r.DialAttempts, failStr(r.Failures))
			}
		default:
			fmt.Fprintln(tw, "target\tstatus\tconns\toffered\tsent/s\trecv/s\texpected\tlost\tdups\tp50\tp99\tp999\tmax\tsrv cpu/msg\tsrv cpu s\tclient lag p99")
			for _, r := range byScen[s] {
				l := r.Latency
				if l == nil {
					l = &hist.Summary{}
				}
				lag := int64(0)
				if r.SendLag != nil {
					lag = r.SendLag.P99
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.2fµs\t%.2f\t%s\n", label(r), status(r), r.Conns,
					Rate(r.OfferedRate), Rate(r.SentRate), Rate(r.DeliveriesPerSec), r.Expected, r.Lost, r.Duplicates,
					Dur(l.P50), Dur(l.P99), Dur(l.P999), Dur(l.Max), r.ServerCPUPerMsgUs, r.ServerCPUSec, Dur(lag))
			}
		}
		for _, r := range byScen[s] {
			if r.Error != "" {
				fmt.Fprintf(tw, "  %s: %s\n", label(r), r.Error)
			}
			for _, n := range r.Notes {
				fmt.Fprintf(tw, "  %s: %s\n", label(r), n)
			}
		}
	}
	tw.Flush()
}

func status(r Result) string {
	if r.Status == "" {
		return "ok"
	}
	return r.Status
}

// LeastSquares returns slope and intercept of y over x.
func LeastSquares(x, y []float64) (slope, intercept float64) {
	n := float64(len(x))
	if len(x) < 2 || len(x) != len(y) {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, sy / n
	}
	slope = (n*sxy - sx*sy) / d
	intercept = (sy - slope*sx) / n
	return slope, intercept
}

// label names a result's row in the text table: the target, and its round
// in a repeated run (gateway#2).
func label(r Result) string {
	if r.Round > 0 {
		return fmt.Sprintf("%s#%d", r.Target, r.Round)
	}
	return r.Target
}
