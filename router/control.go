package router

// The control API (PROTOCOL.md section 11): services and operators act on
// the connections of every instance (disconnect, server-side subscribe and
// unsubscribe) and read presence, history and instance figures.
//
// # Design
//
// Router.Control is the whole operation, called from the admin port's HTTP
// handler or from the backplane's NATS handler (<prefix>.ctl.<op>), never
// from an event loop: it waits. It checks the body, does this instance's
// part (controlLocal) and, when the backplane can scatter (Controller),
// gathers the other instances' parts and merges them. An instance's part
// touches connections only on their own loops: controlLocal posts one task
// to every loop with connections of the user (the registry's loop mask) and
// collects the counts over a channel, off-loop, bounded by ControlTimeout.
// Read-only parts (presence, presence_stats, info) come from the registry,
// which any goroutine may read. history needs no scatter: the stream is
// shared, so the receiving instance reads it (History.Replay).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Close codes of the control API's disconnect (PROTOCOL.md section 4).
const (
	// CloseServiceReconnect: disconnected by a service, may reconnect.
	CloseServiceReconnect ws.StatusCode = 4012
	// CloseServiceRevoked: disconnected by a service, do not reconnect.
	CloseServiceRevoked ws.StatusCode = 4502
)

// Control operation names: the last token of <prefix>.ctl.<op> and the
// path of /api/<op>.
const (
	CtlDisconnect    = "disconnect"
	CtlSubscribe     = "subscribe"
	CtlUnsubscribe   = "unsubscribe"
	CtlPresence      = "presence"
	CtlPresenceStats = "presence_stats"
	CtlHistory       = "history"
	CtlInfo          = "info"
)

// ControlOps lists every control operation, in metrics order.
var ControlOps = [...]string{CtlDisconnect, CtlSubscribe, CtlUnsubscribe, CtlPresence, CtlPresenceStats, CtlHistory, CtlInfo}

// Control outcomes, counted per operation (Router.ControlCounts).
const (
	CtlOK           = "ok"
	CtlBadRequest   = "bad_request"
	CtlUnauthorized = "unauthorized" // bad or missing key (HTTP only)
	CtlForbidden    = "forbidden"    // no -api-key (HTTP only)
	CtlUnavailable  = "unavailable"
)

// ControlOutcomes lists every outcome, in metrics order.
var ControlOutcomes = [...]string{CtlOK, CtlBadRequest, CtlUnauthorized, CtlForbidden, CtlUnavailable}

// Limits on control requests.
const (
	// maxCloseReason is what fits in a close frame's 123-byte reason.
	maxCloseReason = 123
	// DefaultHistoryLimit and MaxHistoryLimit bound a history answer.
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
	// DefaultControlTimeout bounds how long the local part waits for loops
	// and, without a backplane window, for the other instances.
	DefaultControlTimeout = 2 * time.Second
)

// ControlRequest is the JSON body of every control operation (the HTTP GET
// operations build it from the query).
type ControlRequest struct {
	User      string `json:"user,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Room      string `json:"room,omitempty"`
	Channel   string `json:"channel,omitempty"`
	Since     uint64 `json:"since,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

// ControlError is a control operation's failure with its HTTP status
// (400 bad body, 503 backplane down).
type ControlError struct {
	Status  int
	Outcome string
	Message string
}

func (e *ControlError) Error() string { return e.Message }

func badControl(format string, args ...any) *ControlError {
	return &ControlError{Status: 400, Outcome: CtlBadRequest, Message: fmt.Sprintf(format, args...)}
}

var errControlUnavailable = &ControlError{Status: 503, Outcome: CtlUnavailable, Message: "backplane unavailable"}

// ControlPart is one instance's answer to a scattered operation; the
// receiving instance merges the parts.
type ControlPart struct {
	Instance    string   `json:"instance"`
	Connections int      `json:"connections"`
	Users       []string `json:"users,omitempty"`      // presence, presence_stats
	UserCount   int      `json:"user_count,omitempty"` // info
	UptimeS     float64  `json:"uptime_s,omitempty"`   // info
}

// Controller is the optional Backplane ability behind acting on every
// instance, found by a type assertion on Options.Backplane.
type Controller interface {
	// ServeControl gives the backplane this instance's handlers, before
	// Start: local does this instance's part of a scattered operation
	// (answering another instance), full does a whole operation (a
	// service's request on <prefix>.ctl.<op>). Both block briefly; call
	// them off any event loop.
	ServeControl(local func(op string, body []byte) ([]byte, error), full func(op string, body []byte) ([]byte, error))
	// ScatterControl asks every other instance for its part of op and
	// returns the answers (ControlPart JSON) once every known instance
	// answered or the backplane's window passed. It blocks: call it off
	// any event loop. ErrUnavailable when it cannot ask.
	ScatterControl(op string, body []byte) ([][]byte, error)
}

// controlState is the router's control API state.
type controlState struct {
	started time.Time
	cc      Controller
	counts  [len(ControlOps)][len(ControlOutcomes)]atomic.Uint64
}

// bindControl records the start time and hands the handlers to a backplane
// that can scatter (before its Start).
func (r *Router) bindControl() {
	r.ctl.started = time.Now()
	if cc, ok := r.opts.Backplane.(Controller); ok {
		r.ctl.cc = cc
		cc.ServeControl(r.controlPart, r.Control)
	}
}

// NoteControl counts one control operation's outcome (the admin port
// counts the requests it refuses before they reach Control).
func (r *Router) NoteControl(op, outcome string) {
	oi, ui := index(ControlOps[:], op), index(ControlOutcomes[:], outcome)
	if oi < 0 || ui < 0 {
		return
	}
	r.ctl.counts[oi][ui].Add(1)
}

// ControlCounts returns the count of every (op, outcome) pair, indexed as
// ControlOps and ControlOutcomes.
func (r *Router) ControlCounts() [len(ControlOps)][len(ControlOutcomes)]uint64 {
	var out [len(ControlOps)][len(ControlOutcomes)]uint64
	for i := range out {
		for j := range out[i] {
			out[i][j] = r.ctl.counts[i][j].Load()
		}
	}
	return out
}

func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// ParseControl decodes and checks a control body for op.
func ParseControl(op string, body []byte) (*ControlRequest, error) {
	if index(ControlOps[:], op) < 0 {
		return nil, badControl("unknown control operation %q", op)
	}
	req := &ControlRequest{}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(req); err != nil {
			return nil, badControl("bad JSON body: %v", err)
		}
		if dec.More() {
			return nil, badControl("bad JSON body: more than one value")
		}
	}
	if extra := req.fieldsBeyond(op); extra != "" {
		return nil, badControl("%q is not a field of %s", extra, op)
	}
	needName := func(field, v string) error {
		if !wire.ValidName([]byte(v)) {
			return badControl("%q: want 1-128 bytes of [A-Za-z0-9_.:-], got %q", field, v)
		}
		return nil
	}
	switch op {
	case CtlDisconnect:
		if len(req.Reason) > maxCloseReason || !utf8.ValidString(req.Reason) {
			return nil, badControl(`"reason": want at most %d bytes of UTF-8`, maxCloseReason)
		}
		return req, needName("user", req.User)
	case CtlSubscribe, CtlUnsubscribe:
		if err := needName("user", req.User); err != nil {
			return nil, err
		}
		switch {
		case req.Room != "" && req.Channel == "":
			return req, needName("room", req.Room)
		case req.Channel != "" && req.Room == "":
			return req, needName("channel", req.Channel)
		}
		return nil, badControl(`give exactly one of "room" or "channel"`)
	case CtlPresence, CtlPresenceStats, CtlHistory:
		if op == CtlHistory {
			if req.Limit < 0 || req.Limit > MaxHistoryLimit {
				return nil, badControl(`"limit": want 1-%d (0: %d)`, MaxHistoryLimit, DefaultHistoryLimit)
			}
			if req.Limit == 0 {
				req.Limit = DefaultHistoryLimit
			}
		}
		return req, needName("room", req.Room)
	}
	return req, nil // info takes nothing
}

// fieldsBeyond names a field that is set but op does not take ("" if none),
// so that a mistaken request is refused rather than half obeyed.
func (req *ControlRequest) fieldsBeyond(op string) string {
	set := []struct {
		name string
		on   bool
		ops  []string
	}{
		{"user", req.User != "", []string{CtlDisconnect, CtlSubscribe, CtlUnsubscribe}},
		{"reconnect", req.Reconnect, []string{CtlDisconnect}},
		{"reason", req.Reason != "", []string{CtlDisconnect}},
		{"room", req.Room != "", []string{CtlSubscribe, CtlUnsubscribe, CtlPresence, CtlPresenceStats, CtlHistory}},
		{"channel", req.Channel != "", []string{CtlSubscribe, CtlUnsubscribe}},
		{"since", req.Since != 0, []string{CtlHistory}},
		{"limit", req.Limit != 0, []string{CtlHistory}},
	}
	for _, f := range set {
		if f.on && index(f.ops, op) < 0 {
			return f.name
		}
	}
	return ""
}

// Control runs one control operation on every instance and returns its
// JSON answer, or a *ControlError. It waits (for loops, the other
// instances, the history store): call it off any event loop.
func (r *Router) Control(op string, body []byte) ([]byte, error) {
	ans, err := r.control(op, body)
	outcome := CtlOK
	if err != nil {
		var ce *ControlError
		if !errors.As(err, &ce) {
			ce = &ControlError{Status: 503, Outcome: CtlUnavailable, Message: err.Error()}
			err = ce
		}
		outcome = ce.Outcome
	}
	r.NoteControl(op, outcome)
	return ans, err
}

func (r *Router) control(op string, body []byte) ([]byte, error) {
	req, err := ParseControl(op, body)
	if err != nil {
		return nil, err
	}
	if r.opts.Backplane != nil && !r.Ready() {
		return nil, errControlUnavailable
	}
	if op == CtlHistory {
		return r.controlHistory(req)
	}
	if op == CtlPresence || op == CtlPresenceStats {
		return r.controlPresence(op, req) // from the tracker, no scatter (presence.go)
	}
	own, err := r.localPart(op, req)
	if err != nil {
		return nil, err
	}
	parts := []ControlPart{own}
	if r.ctl.cc != nil {
		answers, err := r.ctl.cc.ScatterControl(op, body)
		if err != nil {
			return nil, errControlUnavailable
		}
		for _, a := range answers {
			var p ControlPart
			if json.Unmarshal(a, &p) == nil && p.Instance != "" {
				parts = append(parts, p)
			}
		}
	}
	return mergeControl(op, parts)
}

// controlPart answers another instance's scatter with this instance's part
// (Controller.ServeControl's local).
func (r *Router) controlPart(op string, body []byte) ([]byte, error) {
	req, err := ParseControl(op, body)
	if err != nil {
		return nil, err
	}
	p, err := r.localPart(op, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// mergeControl turns the instances' parts into the operation's answer.
func mergeControl(op string, parts []ControlPart) ([]byte, error) {
	switch op {
	case CtlPresence, CtlPresenceStats:
		lists := make([][]string, 0, len(parts))
		conns := 0
		for _, p := range parts {
			lists = append(lists, p.Users)
			conns += p.Connections
		}
		users := MergeUsers(lists...)
		if op == CtlPresence {
			return json.Marshal(struct {
				Users []string `json:"users"`
			}{users})
		}
		return json.Marshal(struct {
			Users       int `json:"users"`
			Connections int `json:"connections"`
		}{len(users), conns})
	case CtlInfo:
		type instance struct {
			ID          string  `json:"id"`
			Connections int     `json:"connections"`
			Users       int     `json:"users"`
			UptimeS     float64 `json:"uptime_s"`
		}
		out := struct {
			Instances []instance `json:"instances"`
		}{make([]instance, 0, len(parts))}
		for _, p := range parts {
			out.Instances = append(out.Instances, instance{p.Instance, p.Connections, p.UserCount, p.UptimeS})
		}
		sort.Slice(out.Instances, func(i, j int) bool { return out.Instances[i].ID < out.Instances[j].ID })
		return json.Marshal(out)
	}
	n := 0
	for _, p := range parts {
		n += p.Connections
	}
	return json.Marshal(struct {
		Connections int `json:"connections"`
	}{n})
}

// localPart is this instance's part of op.
func (r *Router) localPart(op string, req *ControlRequest) (ControlPart, error) {
	p := ControlPart{Instance: r.opts.InstanceID}
	switch op {
	case CtlPresence, CtlPresenceStats:
		p.Users = r.reg.roomUsers([]byte(req.Room))
		p.Connections = r.reg.count(KindRoom, []byte(req.Room))
	case CtlInfo:
		p.UserCount, p.Connections = r.reg.usersOnline()
		p.UptimeS = float64(time.Since(r.ctl.started).Milliseconds()) / 1000
	default: // disconnect, subscribe, unsubscribe: on the user's loops
		n, err := r.onUserLoops(op, req)
		if err != nil {
			return p, err
		}
		p.Connections = n
	}
	return p, nil
}

// ctlTask is one loop's share of an operation on a user's connections.
type ctlTask struct {
	r    *Router
	op   string
	req  *ControlRequest
	done chan int // the loop's count; buffered, so the loop never waits
}

// onUserLoops runs op on every loop with connections of req.User and
// returns the connections it acted on. It waits for the loops, off-loop.
func (r *Router) onUserLoops(op string, req *ControlRequest) (int, error) {
	in := r.reg.lookup(KindUser, []byte(req.User))
	if in == nil {
		return 0, nil
	}
	mask := in.mask.Load()
	done := make(chan int, len(r.shards))
	posted := 0
	for i, s := range r.shards {
		if mask&loopBit(i) == 0 {
			continue
		}
		if s.loop.Post(engine.Task{Fn: ctlLoopTask, Arg: &ctlTask{r: r, op: op, req: req, done: done}}) {
			posted++
		}
	}
	n := 0
	timeout := time.NewTimer(DefaultControlTimeout)
	defer timeout.Stop()
	for ; posted > 0; posted-- {
		select {
		case c := <-done:
			n += c
		case <-timeout.C:
			return n, &ControlError{Status: 503, Outcome: CtlUnavailable, Message: "event loops did not answer in time"}
		}
	}
	return n, nil
}

// ctlLoopTask acts on the user's connections of one loop (on that loop).
func ctlLoopTask(l *engine.Loop, arg any) {
	t := arg.(*ctlTask)
	s := l.Data().(*shard)
	set := s.tables[KindUser][t.req.User]
	if set == nil {
		t.done <- 0
		return
	}
	// Closing or leaving edits the sets: work on a copy.
	conns := append([]*client(nil), set.list...)
	n := 0
	for _, cl := range conns {
		if cl.conn.State() >= engine.StateClosing {
			continue
		}
		if t.r.controlConn(cl, t.op, t.req) {
			n++
		}
	}
	t.done <- n
}

// controlConn applies op to one connection (on its loop); it reports
// whether the connection counts in the answer.
func (r *Router) controlConn(cl *client, op string, req *ControlRequest) bool {
	s := cl.shard
	kind, name, key, joined, left := KindRoom, req.Room, "room", wire.ReplyJoined, wire.ReplyLeft
	if req.Channel != "" {
		kind, name, key, joined, left = KindChannel, req.Channel, "channel", wire.ReplySubscribed, wire.ReplyUnsubscribed
	}
	switch op {
	case CtlDisconnect:
		code := CloseServiceRevoked
		if req.Reconnect {
			code = CloseServiceReconnect
		}
		cl.conn.Close(code, req.Reason)
		return true
	case CtlSubscribe:
		if cl.member(kind, []byte(name)) >= 0 {
			return true // already a member: nothing to tell
		}
		if len(cl.members) > r.opts.MaxSubscriptions {
			return false // the memory bound holds even past the claims
		}
		r.joinAddr(cl, kind, name)
		if r.settleNeededForJoin() {
			r.holdOutput(cl) // joined once the subscription is in effect (settle.go)
		}
		s.out = cl.codec.AppendServerJoined(s.out[:0], joined, key, []byte(name))
		s.write(cl, s.out)
		return true
	case CtlUnsubscribe:
		i := cl.member(kind, []byte(name))
		if i < 0 {
			return false
		}
		r.leaveAt(cl, i, nil)
		s.out = cl.codec.AppendLeftReason(s.out[:0], left, key, []byte(name), wire.ReasonServer)
		s.write(cl, s.out)
		return true
	}
	return false
}

// historyMessage is one stored message in a history answer.
type historyMessage struct {
	Room string          `json:"room"`
	From string          `json:"from,omitempty"`
	Data json.RawMessage `json:"data"`
	ID   string          `json:"id"`
	Seq  uint64          `json:"seq"`
	TS   int64           `json:"ts"`
}

// controlHistory reads up to req.Limit stored messages of the room after
// req.Since, oldest first, and the room's newest sequence (HEAD; since
// when nothing newer is kept). Paging: ask again with since = the last seq.
func (r *Router) controlHistory(req *ControlRequest) ([]byte, error) {
	if r.hist == nil {
		return nil, &ControlError{Status: 503, Outcome: CtlUnavailable, Message: "history is off (-history)"}
	}
	type result struct {
		msgs []historyMessage
		head uint64
		err  error
	}
	res := &result{head: req.Since, msgs: []historyMessage{}}
	done := make(chan struct{})
	err := r.hist.Replay(req.Room, req.Since, func(page []*Remote) {
		for _, m := range page {
			res.head = max(res.head, m.Seq)
			if len(res.msgs) < req.Limit {
				data := json.RawMessage(append([]byte(nil), m.Data...))
				if len(data) == 0 {
					data = json.RawMessage("null")
				}
				res.msgs = append(res.msgs, historyMessage{Room: req.Room, From: m.From, Data: data, ID: m.ID, Seq: m.Seq, TS: m.TS})
			}
		}
	}, func(_ bool, err error) {
		res.err = err
		close(done)
	})
	if err != nil {
		return nil, errControlUnavailable
	}
	select {
	case <-done:
	case <-time.After(DefaultControlTimeout * 5):
		return nil, &ControlError{Status: 503, Outcome: CtlUnavailable, Message: "history store did not answer in time"}
	}
	if res.err != nil {
		return nil, errControlUnavailable
	}
	return json.Marshal(struct {
		Messages []historyMessage `json:"messages"`
		Seq      uint64           `json:"seq"`
	}{res.msgs, res.head})
}
