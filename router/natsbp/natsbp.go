// Package natsbp is the NATS implementation of router.Backplane.
//
// # Subjects
//
// Under the prefix (default "gw"): <p>.room.<room>, <p>.user.<user>,
// <p>.chan.<channel>, <p>.all. Gateways and services share them: a service
// publishes {"data":...,"from":...,"priority":...,"filter":...} and gateways
// add "id", "ts" and "origin". An instance subscribes to a room, user or
// channel subject only while it has local receivers (router interest), and
// always to <p>.all, so NATS carries one message per interested instance.
// History mode (history.go) keeps room messages in JetStream and delivers
// them from <p>.live.room.<room>; presence queries (presence.go) use
// request/reply on <p>.presence.<room>.
//
// # Who owns what
//
//   - Event loops call Publish and Interest; both only enqueue (a bounded
//     channel, a mutex-guarded pending map) and never wait on the network.
//   - The publisher goroutine owns writes to the NATS connection.
//   - The interest goroutine owns the subscription map; it coalesces
//     changes that arrive while it works, so a burst of joins costs one pass.
//   - The pump goroutine moves inbound messages from the subscriptions'
//     shared channel into a queue bounded by bytes (PendingBytes); past it
//     messages are dropped and counted (inbound.go).
//   - The receiver goroutine owns decoding inbound messages and calls the
//     router's deliver function, which only posts to event loops (bounded
//     by bytes there too), then tells the router what was dropped, so the
//     receivers get `gap`. History gap fills run on their own workers
//     (history.go), never on the receiver.
//   - Counters are atomics, read by metrics at any time.
package natsbp

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// Options configures the backplane. Zero values mean the defaults.
type Options struct {
	// URLs of the NATS servers (a cluster: several). Empty with Server set
	// connects in-process to the embedded server.
	URLs []string
	// Server is an embedded server to connect to in-process.
	Server nats.InProcessConnProvider
	// Prefix of every subject (default "gw").
	Prefix string
	// PublishQueue bounds messages waiting for the publisher goroutine
	// (default 65536); when full, Publish fails with ErrUnavailable.
	PublishQueue int
	// PendingMsgs is the depth of the channel that every subscription
	// feeds (default 65536); the pump keeps it nearly empty, and past it
	// nats.go drops (slow consumer; counted in Stats.Dropped).
	PendingMsgs int
	// PendingBytes bounds the bytes of inbound messages waiting for the
	// receiver goroutine (default DefaultPendingBytes, 64 MiB); past it
	// they are dropped, counted, and their receivers told (inbound.go).
	PendingBytes int
	// ReconnectWait is the base delay between reconnect attempts (default 250ms, with jitter).
	ReconnectWait time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
	// History configures history mode (JetStream; history.go).
	History HistoryOptions
	// PresenceWindow is how long a presence query collects the other
	// instances' answers (default 100ms; presence.go).
	PresenceWindow time.Duration
}

// Stats are the backplane's counters.
type Stats struct {
	Published, PublishErrors, Received, DecodeErrors, Dropped, Reconnects, Disconnects uint64
	Subscriptions                                                                      int
}

// Backplane is a router.Backplane over NATS.
type Backplane struct {
	opts     Options
	instance string
	deliver  func(*router.Remote)
	nc       *nats.Conn

	pubq  chan outbound
	inbox chan *nats.Msg
	rx    receiverState // the pump's queue and drop accounting (inbound.go)

	mu       sync.Mutex // guards pending, barriers and closed
	pending  map[string]bool
	barriers []chan struct{} // closed once the interest changes pending before them are applied
	closed   bool
	kick     chan struct{}

	hist      *history                   // history mode; nil when off (history.go)
	pres      *presence                  // presence queries (presence.go)
	presLocal func(room string) []string // set by ServePresence before Start

	subs map[string]*nats.Subscription // owned by the interest goroutine

	published, publishErrors, received, decodeErrors, dropped, reconnects, disconnects atomic.Uint64
	subscriptions                                                                      atomic.Int64

	done chan struct{}
	wg   sync.WaitGroup
}

type outbound struct {
	subject string
	payload []byte
}

// New prepares a backplane; Start (called by router.Bind) connects.
func New(opts Options) *Backplane {
	if opts.Prefix == "" {
		opts.Prefix = "gw"
	}
	if opts.PublishQueue <= 0 {
		opts.PublishQueue = 65536
	}
	if opts.PendingMsgs <= 0 {
		opts.PendingMsgs = 65536
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Backplane{
		opts:    opts,
		pubq:    make(chan outbound, opts.PublishQueue),
		inbox:   make(chan *nats.Msg, opts.PendingMsgs),
		pending: map[string]bool{},
		kick:    make(chan struct{}, 1),
		subs:    map[string]*nats.Subscription{},
		done:    make(chan struct{}),
	}
	b.rx.init(opts.PendingBytes)
	return b
}

var _ router.Backplane = (*Backplane)(nil)

// Start connects to NATS and starts the backplane's goroutines. It returns
// an error when the first connection fails; later outages are reconnected.
func (b *Backplane) Start(instanceID string, deliver func(*router.Remote)) error {
	b.instance, b.deliver = instanceID, deliver
	log := b.opts.Logger
	nopts := []nats.Option{
		nats.Name("wsgate " + instanceID),
		nats.NoEcho(), // our own publishes are delivered locally by the router
		nats.MaxReconnects(-1),
		nats.ReconnectWait(b.opts.ReconnectWait),
		nats.ReconnectJitter(b.opts.ReconnectWait, b.opts.ReconnectWait),
		nats.ReconnectBufSize(-1), // while down, Publish fails instead of buffering silently
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.disconnects.Add(1)
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.reconnects.Add(1)
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.slowConsumer(sub) // counts each drop once (inbound.go)
				return
			}
			log.Warn("nats error", "err", err)
		}),
	}
	url := strings.Join(b.opts.URLs, ",")
	if b.opts.Server != nil && url == "" {
		nopts = append(nopts, nats.InProcessServer(b.opts.Server))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return fmt.Errorf("natsbp: connect %q: %w", url, err)
	}
	b.nc = nc
	if err := b.subscribe(b.opts.Prefix + ".all"); err != nil {
		nc.Close()
		return err
	}
	if err := b.startHistory(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startPresence(); err != nil {
		nc.Close()
		return err
	}
	b.wg.Add(3)
	go b.publisher()
	go b.receiver()
	go b.interestLoop()
	return nil
}

// Ready reports whether NATS is connected (for /readyz).
func (b *Backplane) Ready() bool { return b.nc != nil && b.nc.IsConnected() }

// Conn is the NATS connection, for services embedded in the same process.
func (b *Backplane) Conn() *nats.Conn { return b.nc }

// Stats returns the counters.
func (b *Backplane) Stats() Stats {
	b.settleSubDrops()
	return Stats{
		Published: b.published.Load(), PublishErrors: b.publishErrors.Load(), Received: b.received.Load(),
		DecodeErrors: b.decodeErrors.Load(), Dropped: b.dropped.Load(), Reconnects: b.reconnects.Load(),
		Disconnects: b.disconnects.Load(), Subscriptions: int(b.subscriptions.Load()),
	}
}

// Subject is the NATS subject of an address.
func (b *Backplane) Subject(kind router.Kind, name string) string {
	switch kind {
	case router.KindUser:
		return b.opts.Prefix + ".user." + name
	case router.KindChannel:
		return b.opts.Prefix + ".chan." + name
	case router.KindAll:
		return b.opts.Prefix + ".all"
	}
	return b.opts.Prefix + ".room." + name
}

// Publish enqueues m for the publisher goroutine. It fails at once when NATS
// is down or the queue is full, so the client hears `unavailable`.
func (b *Backplane) Publish(m *router.Remote) error {
	if !b.Ready() {
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
	payload, err := encode(m)
	if err != nil {
		return fmt.Errorf("natsbp: encode: %w", err)
	}
	select {
	case b.pubq <- outbound{subject: b.Subject(m.Kind, m.Name), payload: payload}:
		return nil
	default:
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
}

func (b *Backplane) publisher() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case o := <-b.pubq:
			if err := b.nc.Publish(o.subject, o.payload); err != nil {
				b.publishErrors.Add(1)
				continue
			}
			b.published.Add(1)
		}
	}
}

// Interest records a subscription change for the interest goroutine.
func (b *Backplane) Interest(kind router.Kind, name string, on bool) {
	subj := b.interestSubject(kind, name)
	b.mu.Lock()
	if !b.closed {
		b.pending[subj] = on
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Backplane) interestLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		}
		b.mu.Lock()
		batch := b.pending
		b.pending = make(map[string]bool, len(batch))
		barriers := b.barriers
		b.barriers = nil
		b.mu.Unlock()
		for subj, on := range batch {
			sub, have := b.subs[subj]
			switch {
			case on && !have:
				if err := b.subscribe(subj); err != nil {
					b.opts.Logger.Warn("nats subscribe failed", "subject", subj, "err", err)
				}
			case !on && have:
				_ = sub.Unsubscribe()
				delete(b.subs, subj)
				b.subscriptions.Add(-1)
			}
		}
		for _, c := range barriers {
			close(c)
		}
	}
}

// subscribe adds a subscription feeding the shared inbox (no goroutine per
// subscription: a million users means a million subscriptions).
func (b *Backplane) subscribe(subj string) error {
	sub, err := b.nc.ChanSubscribe(subj, b.inbox)
	if err != nil {
		return fmt.Errorf("natsbp: subscribe %s: %w", subj, err)
	}
	// No SetPendingLimits: nats.go refuses it on a channel subscription;
	// the channel's depth and the pump's byte budget bound it (inbound.go).
	b.subs[subj] = sub
	b.subscriptions.Add(1)
	return nil
}

// receiver starts the pump, which moves messages from the subscriptions'
// channel into a byte-bounded queue, and delivers from that queue
// (inbound.go).
func (b *Backplane) receiver() {
	defer b.wg.Done()
	b.wg.Add(1) // the receiver's own count keeps the group above zero
	go b.pump()
	b.receive()
}

// Close stops the goroutines and drains the connection.
func (b *Backplane) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.wg.Wait()
	if b.nc != nil {
		b.nc.Close()
	}
	return nil
}

// wire is the JSON payload on the subjects (PROTOCOL.md section 5).
type wire struct {
	Data     json.RawMessage `json:"data,omitempty"`
	From     string          `json:"from,omitempty"`
	Priority string          `json:"priority,omitempty"`
	Filter   json.RawMessage `json:"filter,omitempty"`
	ID       string          `json:"id,omitempty"`
	TS       int64           `json:"ts,omitempty"`
	Origin   string          `json:"origin,omitempty"`
}

func encode(m *router.Remote) ([]byte, error) {
	w := wire{Data: m.Data, From: m.From, Filter: m.Filter, ID: m.ID, TS: m.TS, Origin: m.Origin}
	if m.Priority != router.PriorityNormal {
		w.Priority = m.Priority.String()
	}
	return json.Marshal(&w)
}

// decode turns an inbound NATS message into a router.Remote. Messages from
// services lack id and ts; the router stamps them.
func (b *Backplane) decode(subject string, payload []byte) (*router.Remote, error) {
	rest, ok := strings.CutPrefix(subject, b.opts.Prefix+".")
	if !ok {
		return nil, fmt.Errorf("natsbp: subject %q outside prefix", subject)
	}
	rm := &router.Remote{}
	switch {
	case rest == "all":
		rm.Kind = router.KindAll
	case strings.HasPrefix(rest, "room."):
		rm.Kind, rm.Name = router.KindRoom, rest[len("room."):]
	case strings.HasPrefix(rest, "user."):
		rm.Kind, rm.Name = router.KindUser, rest[len("user."):]
	case strings.HasPrefix(rest, "chan."):
		rm.Kind, rm.Name = router.KindChannel, rest[len("chan."):]
	default:
		return nil, fmt.Errorf("natsbp: unknown subject %q", subject)
	}
	var w wire
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("natsbp: payload on %s: %w", subject, err)
	}
	rm.Data, rm.From, rm.Filter, rm.ID, rm.TS, rm.Origin = w.Data, w.From, w.Filter, w.ID, w.TS, w.Origin
	if len(rm.Data) == 0 {
		rm.Data = []byte("null")
	}
	switch w.Priority {
	case "", "normal":
	case "high":
		rm.Priority = router.PriorityHigh
	case "low":
		rm.Priority = router.PriorityLow
	default:
		return nil, fmt.Errorf("natsbp: priority %q", w.Priority)
	}
	return rm, nil
}
