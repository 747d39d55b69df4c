package natsbp

// # Control API across instances (router/control.go)
//
// Two subscriptions per instance:
//
//   - <p>.ctl.<op>, in queue group "wsgate-ctl": a service's request. One
//     instance takes it, runs the whole operation (router.Router.Control,
//     which scatters through ScatterControl below) and responds with the
//     answer JSON, or with header Wsgate-Error: <status> and an error object.
//   - <p>.ctl.x.<op>: the internal fan-out. Every instance answers with its
//     part (router.ControlPart JSON). NoEcho keeps the asker from answering
//     itself: it does its own part directly.
//
// ScatterControl publishes on <p>.ctl.x.<op> with a fresh inbox and
// collects parts until every peer heard on the heartbeat (Peers) answered
// or PresenceWindow passed. Handlers run on their own goroutine (they wait
// for event loops), at most maxControlInFlight at a time; past that a
// request is refused with 503 (and a fan-out part is not given, so the
// asker answers without this instance's part, as for a lost instance).

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// maxControlInFlight bounds the control handlers running at once.
const maxControlInFlight = 64

// controlQueue is the queue group of <p>.ctl.<op>: one instance serves each request.
const controlQueue = "wsgate-ctl"

// ErrorHeader carries the HTTP status of a control request that failed
// (the body is {"error": message, "status": status}).
const ErrorHeader = "Wsgate-Error"

type controlHandlers struct {
	local, full func(op string, body []byte) ([]byte, error)
	sem         chan struct{}
}

var _ router.Controller = (*Backplane)(nil)

// ServeControl sets the control handlers (router.Controller; before Start).
func (b *Backplane) ServeControl(local, full func(op string, body []byte) ([]byte, error)) {
	b.ctl = controlHandlers{local: local, full: full, sem: make(chan struct{}, maxControlInFlight)}
}

func (b *Backplane) controlPrefix() string { return b.opts.Prefix + ".ctl." }

func (b *Backplane) startControl() error {
	if b.ctl.full == nil {
		return nil
	}
	pre := b.controlPrefix()
	if _, err := b.nc.QueueSubscribe(pre+"*", controlQueue, func(m *nats.Msg) {
		b.runControl(m, m.Subject[len(pre):], b.ctl.full, true)
	}); err != nil {
		return fmt.Errorf("natsbp: control subscribe: %w", err)
	}
	xpre := pre + "x."
	if _, err := b.nc.Subscribe(xpre+"*", func(m *nats.Msg) {
		b.runControl(m, m.Subject[len(xpre):], b.ctl.local, false)
	}); err != nil {
		return fmt.Errorf("natsbp: control fan-out subscribe: %w", err)
	}
	return nil
}

// runControl answers one control message on a goroutine of its own
// (handlers wait for event loops and other instances), within the bound.
func (b *Backplane) runControl(m *nats.Msg, op string, h func(string, []byte) ([]byte, error), public bool) {
	if m.Reply == "" {
		return
	}
	select {
	case b.ctl.sem <- struct{}{}:
	default:
		if public {
			respondControlError(m, 503, "too many control requests in flight")
		}
		return
	}
	data := append([]byte(nil), m.Data...)
	go func() {
		defer func() { <-b.ctl.sem }()
		ans, err := h(op, data)
		if err != nil {
			if public {
				status := 503
				if ce, ok := err.(*router.ControlError); ok {
					status = ce.Status
				}
				respondControlError(m, status, err.Error())
			}
			return
		}
		_ = m.Respond(ans)
	}()
}

func respondControlError(m *nats.Msg, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{msg, status})
	r := nats.NewMsg(m.Reply)
	r.Header.Set(ErrorHeader, strconv.Itoa(status))
	r.Data = body
	_ = m.RespondMsg(r)
}

// ScatterControl asks every other instance for its part of op
// (router.Controller). It blocks up to PresenceWindow.
func (b *Backplane) ScatterControl(op string, body []byte) ([][]byte, error) {
	if b.nc == nil || !b.Ready() {
		return nil, router.ErrUnavailable
	}
	want := len(b.Peers())
	if want == 0 {
		return nil, nil
	}
	window := b.opts.PresenceWindow
	if window <= 0 {
		window = DefaultPresenceWindow
	}
	var (
		mu       sync.Mutex
		parts    [][]byte
		finished bool // the asker took parts: later answers are dropped
		full     = make(chan struct{})
	)
	if strings.Contains(op, ".") || op == "" {
		return nil, fmt.Errorf("natsbp: bad control op %q", op)
	}
	inbox := nats.NewInbox()
	sub, err := b.nc.Subscribe(inbox, func(m *nats.Msg) {
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			return // no responders: nobody else listens
		}
		mu.Lock()
		defer mu.Unlock()
		if !finished && len(parts) < want {
			parts = append(parts, append([]byte(nil), m.Data...))
			if len(parts) == want {
				close(full)
			}
		}
	})
	if err != nil {
		return nil, router.ErrUnavailable
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(b.controlPrefix()+"x."+op, inbox, body); err != nil {
		return nil, router.ErrUnavailable
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-full:
	case <-t.C:
	case <-b.done:
	}
	mu.Lock()
	defer mu.Unlock()
	finished = true
	return parts, nil
}
