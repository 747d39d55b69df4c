// Package harness runs wsbench scenarios: it starts target servers, spreads
// load-client connections over worker processes (the wsbench binary
// re-executed as `wsbench worker`), and turns their reports into results.
//
// Parent and workers speak JSON lines: commands on the worker's stdin, one
// reply per command plus unsolicited "progress" events on its stdout. The
// worker's stderr is passed through.
package harness

import (
	"github.com/wsgate/wsgate/bench/hist"
)

// WorkerInit configures a worker process (first line on its stdin).
type WorkerInit struct {
	Index   int      `json:"index"`
	Targets []string `json:"targets"` // host:port, round robin over connections
	Path    string   `json:"path"`    // request path incl. query, e.g. /ws
	Headers []string `json:"headers,omitempty"`
	Sources []string `json:"sources,omitempty"` // source IPv4 addresses to bind, round robin
	Loops   int      `json:"loops"`
	// Codec names the payload codec (see RegisterCodec); "" = "raw".
	Codec            string `json:"codec,omitempty"`
	ConnectTimeoutMs int    `json:"connect_timeout_ms"`
	ReadBuf          int    `json:"read_buf,omitempty"`
	MinIterationUs   int    `json:"min_iteration_us,omitempty"`
	ProgressMs       int    `json:"progress_ms,omitempty"`
	// CodecArgs configure the codec (JSON codec: mode, room, secret, ...).
	CodecArgs map[string]string `json:"codec_args,omitempty"`
	// IDBase is the global id of this worker's connection 0 (connection ids
	// are global across workers: base + worker-local id).
	IDBase int `json:"id_base,omitempty"`
	// SenderTarget, when > 0, makes every sending connection dial
	// Targets[SenderTarget-1] (publishers on one instance); receivers go
	// round robin over all targets.
	SenderTarget int `json:"sender_target,omitempty"`
	// PortLo..PortHi: explicit source ports (0 = kernel picks)
	PortLo int `json:"port_lo,omitempty"`
	PortHi int `json:"port_hi,omitempty"`
}

// Cmd is a parent -> worker command.
type Cmd struct {
	Op string `json:"op"` // connect | run | collect | poll | mark | closeall | exit
	// connect
	Total     int  `json:"total,omitempty"`     // desired connections in this worker
	Senders   int  `json:"senders,omitempty"`   // worker-local ids < Senders send in "run"
	InFlight  int  `json:"inflight,omitempty"`  // concurrent dials in this worker
	Hold      bool `json:"hold,omitempty"`      // keep connections open after the upgrade
	Reconnect bool `json:"reconnect,omitempty"` // redial whatever closes
	WaitMs    int  `json:"wait_ms,omitempty"`   // give up waiting for the connect phase after this
	Slow      int  `json:"slow,omitempty"`      // worker-local ids in [Senders, Senders+Slow) stop reading during "run"
	// run
	StartNs     int64   `json:"start_ns,omitempty"`
	DurationNs  int64   `json:"duration_ns,omitempty"`
	Rate        float64 `json:"rate,omitempty"` // msgs/s over all of this worker's senders
	MsgSize     int     `json:"msg_size,omitempty"`
	Text        bool    `json:"text,omitempty"`
	MeasureFrom int64   `json:"measure_from,omitempty"` // record latency of messages intended in [from,to)
	MeasureTo   int64   `json:"measure_to,omitempty"`
	ResumeNs    int64   `json:"resume_ns,omitempty"` // slow connections read again from this time (0 = at the end of the run)
	// mark
	RefNs int64 `json:"ref_ns,omitempty"`
}

// Progress is the cheap counter snapshot (also the reply to "poll").
type Progress struct {
	Open       int64 `json:"open"`
	Connecting int64 `json:"connecting"`
	Dials      int64 `json:"dials"`
	Failed     int64 `json:"failed"`
	Closed     int64 `json:"closed"` // open connections that closed
	Sent       int64 `json:"sent"`
	SendFailed int64 `json:"send_failed"`
	Recv       int64 `json:"recv"` // measured payloads received (all, not only the window)
	RecvWindow int64 `json:"recv_window"`
	SentWindow int64 `json:"sent_window"`
	Other      int64 `json:"other"` // data messages that were not ours
	BytesIn    int64 `json:"bytes_in"`
	Reopened   int64 `json:"reopened"`  // opens after the last mark
	Ready      int64 `json:"ready"`     // connections the codec reported ready (e.g. room joined)
	SlowRecv   int64 `json:"slow_recv"` // measured payloads received by slow connections (not in Recv)
	Errors     int64 `json:"errors"`    // protocol error replies (codec-classified)
	Dups       int64 `json:"dups"`      // measured payloads a connection had already received (same seq; not in Recv)
}

// Event is a worker -> parent line.
type Event struct {
	Ev       string    `json:"ev"` // hello | progress | reply | error
	Pid      int       `json:"pid,omitempty"`
	Error    string    `json:"error,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	Stats    *Stats    `json:"stats,omitempty"`
}

// Stats is the reply to "connect" and "collect".
type Stats struct {
	Progress
	Failures     map[string]int64 `json:"failures,omitempty"`
	ConnectHist  *hist.Snapshot   `json:"connect_hist,omitempty"`
	LatencyHist  *hist.Snapshot   `json:"latency_hist,omitempty"`
	LagHist      *hist.Snapshot   `json:"lag_hist,omitempty"`
	ReopenHist   *hist.Snapshot   `json:"reopen_hist,omitempty"`
	FirstDialNs  int64            `json:"first_dial_ns,omitempty"`
	LastOpenNs   int64            `json:"last_open_ns,omitempty"`
	LastReopenNs int64            `json:"last_reopen_ns,omitempty"`
	TimedOut     bool             `json:"timed_out,omitempty"`
}
