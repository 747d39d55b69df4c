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
// them from <p>.live.room.<room>; presence (presence.go) carries the
// replicated trackers' messages on <p>.pres.<room> and <p>.pres-inst; client `rpc` requests go to
// services on <p>.rpc.<method> (rpc.go); instances heartbeat on <p>.inst.hb
// (health.go).
//
// # Who owns what
//
//   - Event loops call Publish and Interest; both only enqueue (a channel
//     bounded in messages and bytes, a mutex-guarded dirty set) and read
//     atomics. Nothing they call takes nats.go's connection lock, which
//     nats.go holds across socket writes.
//   - The publisher goroutine owns client-message writes: it publishes in
//     batches, confirms each batch with a PING/PONG round trip, and settles
//     the batch with each message's router.Confirmer.
//   - The interest goroutine owns the subscription map. It is
//     level-triggered: for each address marked dirty it reads the router's
//     truth (Host.HasLocal) and subscribes or unsubscribes to match, and it
//     reconciles every address after a reconnect.
//   - The health goroutine (health.go) owns readiness: it publishes the
//     heartbeat, restores the instance after a reconnect (subscriptions
//     flushed, peers heard again) and only then sets ready.
//   - nats.go's callbacks update the connection state (atomics) and the
//     peer table (its own mutex).
//   - The pump goroutine moves inbound messages from the subscriptions'
//     shared channel into a queue bounded by bytes (PendingBytes); past it
//     messages are dropped and counted (inbound.go).
//   - The receiver goroutine owns decoding inbound messages (with its
//     decode workers for large batches, each subject on one of them) and
//     calls the router's deliver function, which only posts to event loops
//     (bounded by bytes there too), then tells the router what was dropped, so the
//     receivers get `gap`. History gap fills run on their own workers
//     (history.go), never on the receiver.
//   - The sync goroutine (sync.go) runs Sync rounds: interest applied,
//     earlier publishes settled, a PING/PONG, a sentinel through the
//     receiver; then it calls the waiting done functions.
//   - Counters are atomics, read by metrics at any time.
package natsbp

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
	// PublishQueueBytes bounds the bytes of those messages (default 64 MiB).
	PublishQueueBytes int
	// PendingMsgs is the depth of the channel that every subscription
	// feeds (default 65536); the pump keeps it nearly empty, and past it
	// nats.go drops (slow consumer; counted in Stats.Dropped).
	PendingMsgs int
	// PendingBytes bounds the bytes of inbound messages waiting for the
	// receiver goroutine (default DefaultPendingBytes, 64 MiB); past it
	// they are dropped, counted, and their receivers told (inbound.go).
	PendingBytes int
	// ReceiveWorkers is how many goroutines decode and deliver inbound
	// messages, the receiver included (default min(4, GOMAXPROCS); 1:
	// the receiver alone). Each subject's messages stay on one of them, in
	// order (inbound.go).
	ReceiveWorkers int
	// ReconnectWait is the base delay between reconnect attempts (default 250ms, with jitter).
	ReconnectWait time.Duration
	// ConfirmTimeout bounds the wait for the server's confirmation of a
	// batch of publishes (and any one socket write); past it the batch's
	// senders get `unavailable` (default 5s).
	ConfirmTimeout time.Duration
	// InstanceTimeout is how long an instance may be silent on the
	// heartbeat subject before its peers stop waiting for it after a
	// reconnect (default 3s; health.go).
	InstanceTimeout time.Duration
	// CloseTimeout bounds how long Close hands on queued messages (default 5s).
	CloseTimeout time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
	// History configures history mode (JetStream; history.go).
	History HistoryOptions
	// PresenceWindow is how long a scattered control operation collects
	// the other instances' answers (default 100ms; control.go). Presence
	// answers from the replicated tracker and does not wait.
	PresenceWindow time.Duration
	// SharedUserInterest replaces the per-user subscriptions with one
	// wildcard subscription, <p>.user.*, taken at Start and filtered
	// locally: a message for user U still reaches exactly U's connections
	// on every instance, but every instance receives every user message,
	// also for users it does not have. It saves a subscription per online
	// user (~300 bytes in this process and ~600 in the NATS server's,
	// docs/architecture.md "What a connection costs"); it suits one
	// instance, or a few with little user traffic.
	SharedUserInterest bool
}

// Defaults of the reliability options.
const (
	DefaultConfirmTimeout    = 5 * time.Second
	DefaultInstanceTimeout   = 3 * time.Second
	DefaultPublishQueueBytes = 64 << 20
)

// Stats are the backplane's counters.
type Stats struct {
	Published, PublishErrors, Received, DecodeErrors, Dropped, Reconnects, Disconnects uint64
	Subscriptions                                                                      int
}

// Backplane is a router.Backplane over NATS.
type Backplane struct {
	upReplies  func(token uint64, data []byte, noResponders bool) // hook answers (upstream.go)
	upInbox    string                                             // "<inbox>." of hook requests
	opts       Options
	subjPrefix string // opts.Prefix + "."
	instance   string
	host       router.Host
	deliver    func(*router.Remote)
	nc         *nats.Conn

	pubq        chan outbound
	freeBufs    chan *pubBuf // free list of queued messages' buffers (Publish)
	queuedBytes atomic.Int64 // payload bytes in pubq (Options.PublishQueueBytes)
	pubMu       sync.RWMutex // Publish holds it shared while enqueueing; Close exclusively, to stop them
	pubClosed   bool         // under pubMu
	inbox       chan *nats.Msg
	rx          receiverState // the pump's queue and drop accounting (inbound.go)
	rxRemote    router.Remote // the receiver goroutine's decoded message (handle; worker 0)

	mu           sync.Mutex // guards dirty, reconcileAll, barriers, closed and syncs.waiting
	dirty        map[addr]struct{}
	reconcileAll bool
	barriers     []chan struct{} // closed once the interest changes pending before them are applied
	closed       bool
	kick         chan struct{}
	syncs        syncState // Sync requests (sync.go)

	hist     *history                                // history mode; nil when off (history.go)
	pres     *presence                               // presence transport (presence.go)
	presIn   func(*router.PresenceMsg)               // set by ServeTracker before Start (presence.go)
	rpc      *rpcSender                              // requests to services (rpc.go); nil when the router serves none
	rpcReply func(token uint64, rep router.RPCReply) // set by ServeReplies before Start
	ctl      controlHandlers                         // set by ServeControl before Start (control.go)

	// subs maps interest subjects to their subscriptions, one per online
	// user among them; owned by the interest goroutine. The subject is
	// the key and nothing else is stored: the address is parsed back from
	// it (interestAddr) on the rare walk after a reconnect.
	subs map[string]*nats.Subscription

	health // readiness, heartbeats, peers (health.go)

	published, publishErrors, received, decodeErrors, dropped, reconnects, disconnects atomic.Uint64
	subscriptions                                                                      atomic.Int64

	closing chan struct{} // closed by Close: the publisher hands on what is queued, then exits
	pubDone chan struct{} // closed when the publisher has exited
	done    chan struct{}
	wg      sync.WaitGroup
}

// addr is a router address, the key of interest reconciliation.
type addr struct {
	kind router.Kind
	name string
}

type outbound struct {
	subject string // aliases buf
	payload []byte // aliases buf
	buf     *pubBuf
	confirm router.Confirmer
	seq     uint64 // ConfirmSeq
	epoch   uint64 // readiness epoch when accepted (health.go)
	// marker, when set, makes this no message but a Sync marker: closed
	// once every message queued before it is settled (sync.go).
	marker chan struct{}
}

// New prepares a backplane; Start (called by router.Bind) connects.
func New(opts Options) *Backplane {
	if opts.Prefix == "" {
		opts.Prefix = "gw"
	}
	if opts.PublishQueue <= 0 {
		opts.PublishQueue = 65536
	}
	if opts.PublishQueueBytes <= 0 {
		opts.PublishQueueBytes = DefaultPublishQueueBytes
	}
	if opts.PendingMsgs <= 0 {
		opts.PendingMsgs = 65536
	}
	if opts.ReceiveWorkers <= 0 {
		opts.ReceiveWorkers = min(4, runtime.GOMAXPROCS(0))
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = 250 * time.Millisecond
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = DefaultConfirmTimeout
	}
	if opts.InstanceTimeout <= 0 {
		opts.InstanceTimeout = DefaultInstanceTimeout
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Backplane{
		opts:       opts,
		subjPrefix: opts.Prefix + ".",
		freeBufs:   make(chan *pubBuf, freeBufs),
		pubq:       make(chan outbound, opts.PublishQueue),
		inbox:      make(chan *nats.Msg, opts.PendingMsgs),
		dirty:      map[addr]struct{}{},
		kick:       make(chan struct{}, 1),
		syncs:      syncState{kick: make(chan struct{}, 1)},
		subs:       map[string]*nats.Subscription{},
		health:     newHealth(),
		closing:    make(chan struct{}),
		pubDone:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	b.rx.init(opts.PendingBytes, opts.ReceiveWorkers)
	return b
}

var _ router.Backplane = (*Backplane)(nil)

// Start connects to NATS and starts the backplane's goroutines. It returns
// an error when the first connection fails; later outages are reconnected.
func (b *Backplane) Start(instanceID string, host router.Host) error {
	b.instance, b.host, b.deliver = instanceID, host, host.Deliver
	log := b.opts.Logger
	nopts := []nats.Option{
		nats.Name("wsgate " + instanceID),
		nats.NoEcho(), // our own publishes are delivered locally by the router
		nats.MaxReconnects(-1),
		nats.ReconnectWait(b.opts.ReconnectWait),
		nats.ReconnectJitter(b.opts.ReconnectWait, b.opts.ReconnectWait),
		nats.ReconnectBufSize(-1), // while down, Publish fails instead of buffering silently
		nats.RetryOnFailedConnect(false),
		nats.FlusherTimeout(b.opts.ConfirmTimeout), // a write stuck this long means the connection is gone
		nats.Timeout(b.opts.ConfirmTimeout),        // dial and handshake; nats.go's 2 s fails on a loaded host
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.disconnects.Add(1)
			b.lostConnection()
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.reconnects.Add(1)
			log.Info("nats reconnected; restoring subscriptions", "url", nc.ConnectedUrlRedacted())
			b.kickRestore()
		}),
		nats.ClosedHandler(func(*nats.Conn) { b.lostConnection() }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && b.isPresenceSub(sub) {
				b.presenceSlow() // repaired by a full transfer (presence.go)
				return
			}
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
	if b.opts.SharedUserInterest {
		if err := b.subscribe(b.userWildcard()); err != nil {
			nc.Close()
			return err
		}
	}
	if err := b.startHistory(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startPresence(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startRPC(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startUpstream(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startControl(); err != nil {
		nc.Close()
		return err
	}
	if err := b.startHealth(); err != nil {
		nc.Close()
		return err
	}
	b.wg.Add(4)
	go b.publisher()
	go b.receiver()
	go b.interestLoop()
	go b.syncLoop()
	return nil
}

// Ready reports whether the instance can take client messages: connected,
// its subscriptions on the server, and (after a reconnect) its peers heard
// again (health.go). It reads an atomic: safe from event loops.
func (b *Backplane) Ready() bool { return b.ready.Load() }

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

// Publish enqueues m for the publisher goroutine. It fails at once when the
// instance is not ready or the queue is full, so the client hears
// `unavailable`; otherwise m.Confirm (if set) hears later whether the
// server has it.
func (b *Backplane) Publish(m *router.Remote) error {
	epoch := b.readyEpoch.Load()
	if !b.ready.Load() {
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
	// Subject and payload share one pooled buffer, back in the pool once
	// the publisher has written them (nats.go copies them to its socket
	// buffer): no allocation per message.
	buf := b.getBuf()
	buf.b = b.appendSubject(buf.b[:0], m.Kind, m.Name)
	n := len(buf.b)
	buf.b = appendMessage(buf.b, m, 0)
	o := outbound{subject: bstr(buf.b[:n]), payload: buf.b[n:], buf: buf, confirm: m.Confirm, seq: m.ConfirmSeq, epoch: epoch}
	size := int64(len(o.payload))
	b.pubMu.RLock()
	ok := !b.pubClosed && b.queuedBytes.Add(size) <= int64(b.opts.PublishQueueBytes)
	if ok {
		select {
		case b.pubq <- o:
		default:
			ok = false
		}
	}
	if !ok && !b.pubClosed {
		b.queuedBytes.Add(-size)
	}
	b.pubMu.RUnlock()
	if !ok {
		b.putBuf(buf)
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
	return nil
}

// pubBuf holds one queued message's subject and payload (Publish).
type pubBuf struct{ b []byte }

// The free list of pubBufs holds at most freeBufs of them, each at most
// maxFreeBuf bytes: a bounded memory cost (4 MiB at the usual 512 bytes,
// 32 MiB at most), and no allocation per message while the backlog stays
// within it (two batches). Unlike a sync.Pool it is not emptied by every
// garbage collection, which would allocate the backlog's worth again each
// cycle. Larger buffers (large messages), and those of a deeper backlog,
// are left to the garbage collector.
const (
	freeBufs   = 2 * maxBatch
	maxFreeBuf = 4 << 10
)

func (b *Backplane) getBuf() *pubBuf {
	select {
	case buf := <-b.freeBufs:
		return buf
	default:
		return &pubBuf{b: make([]byte, 0, 512)}
	}
}

func (b *Backplane) putBuf(buf *pubBuf) {
	if buf == nil || cap(buf.b) > maxFreeBuf {
		return
	}
	select {
	case b.freeBufs <- buf:
	default:
	}
}

// appendSubject appends the NATS subject of an address (Subject).
func (b *Backplane) appendSubject(dst []byte, kind router.Kind, name string) []byte {
	dst = append(dst, b.subjPrefix...)
	switch kind {
	case router.KindUser:
		dst = append(dst, "user."...)
	case router.KindChannel:
		dst = append(dst, "chan."...)
	case router.KindAll:
		return append(dst, "all"...)
	default:
		dst = append(dst, "room."...)
	}
	return append(dst, name...)
}

// Publisher batching: as much as is queued, up to these bounds, goes out
// before one confirmation round trip.
const (
	maxBatch      = 4096
	maxBatchBytes = 4 << 20
)

// errStale fails a message accepted before an outage: it is never sent
// after the instance reconnected (its senders were told `unavailable` or
// are about to be).
var errStale = errors.New("natsbp: accepted before the connection was lost")

func (b *Backplane) publisher() {
	defer b.wg.Done()
	defer close(b.pubDone)
	batch := make([]outbound, 0, 64)
	var settle []settlement
	var markers []chan struct{}
	for {
		var o outbound
		select {
		case o = <-b.pubq:
		case <-b.closing:
			// Hand on everything accepted before Close, then stop.
			select {
			case o = <-b.pubq:
			default:
				return
			}
		}
		batch = append(batch[:0], o)
		size := len(o.payload)
	fill:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case o = <-b.pubq:
				batch = append(batch, o)
				size += len(o.payload)
			default:
				break fill
			}
		}
		b.queuedBytes.Add(-int64(size))
		batch, markers = takeMarkers(batch, markers[:0])
		// Epochs never decrease along the queue: the stale ones (accepted
		// before an outage) come first and fail without being sent.
		epoch := b.readyEpoch.Load()
		stale := 0
		for stale < len(batch) && batch[stale].epoch != epoch {
			stale++
		}
		settle = b.settle(settle, batch[:stale], errStale)
		err := b.sendConfirmed(batch[stale:])
		settle = b.settle(settle, batch[stale:], err)
		for i := range batch {
			b.putBuf(batch[i].buf)
			batch[i] = outbound{}
		}
		for i, m := range markers {
			close(m) // everything queued before it is settled
			markers[i] = nil
		}
	}
}

// takeMarkers removes the Sync markers from batch, keeping the messages in
// order, and appends them to markers.
func takeMarkers(batch []outbound, markers []chan struct{}) ([]outbound, []chan struct{}) {
	n := 0
	for _, o := range batch {
		if o.marker != nil {
			markers = append(markers, o.marker)
			continue
		}
		batch[n] = o
		n++
	}
	clear(batch[n:])
	return batch[:n], markers
}

// sendConfirmed publishes batch and waits until the server has processed
// it: a PING after the PUBs, answered by a PONG on the same connection. A
// reconnect in between fails the batch, because nats.go drops what it had
// not written when the connection broke, and a PONG from the new
// connection proves nothing about it.
func (b *Backplane) sendConfirmed(batch []outbound) error {
	if len(batch) == 0 {
		return nil
	}
	if !b.ready.Load() {
		return router.ErrUnavailable
	}
	gen := b.connGen()
	if gen != b.readyGen.Load() {
		return errReconnected // the health goroutine has not restored this connection yet
	}
	for i := range batch {
		if err := b.nc.Publish(batch[i].subject, batch[i].payload); err != nil {
			return err
		}
	}
	if err := b.nc.FlushTimeout(b.opts.ConfirmTimeout); err != nil {
		return err
	}
	if b.connGen() != gen {
		return errReconnected
	}
	return nil
}

// settlement is one Confirmer's highest ConfirmSeq in a batch.
type settlement struct {
	c   router.Confirmer
	seq uint64
}

// settle counts batch and tells each Confirmer once (the loops are few,
// so a linear search beats a map).
func (b *Backplane) settle(scratch []settlement, batch []outbound, err error) []settlement {
	if len(batch) == 0 {
		return scratch
	}
	if err != nil {
		b.publishErrors.Add(uint64(len(batch)))
	} else {
		b.published.Add(uint64(len(batch)))
	}
	scratch = scratch[:0]
next:
	for i := range batch {
		c := batch[i].confirm
		if c == nil {
			continue
		}
		for j := range scratch {
			if scratch[j].c == c {
				scratch[j].seq = batch[i].seq
				continue next
			}
		}
		scratch = append(scratch, settlement{c: c, seq: batch[i].seq})
	}
	if err != nil && !errors.Is(err, router.ErrUnavailable) {
		err = fmt.Errorf("%w: %v", router.ErrUnavailable, err)
	}
	for i := range scratch {
		scratch[i].c.Confirmed(scratch[i].seq, err)
		scratch[i] = settlement{}
	}
	return scratch[:0]
}

// Interest marks the address for the interest goroutine, which reconciles
// its subscription with the router's registry (Host.HasLocal).
func (b *Backplane) Interest(kind router.Kind, name string) {
	b.mu.Lock()
	if !b.closed {
		b.dirty[addr{kind: kind, name: name}] = struct{}{}
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// reconcileEverything marks every address, subscribed or with local
// receivers, for the interest goroutine (after a reconnect).
func (b *Backplane) reconcileEverything() {
	b.mu.Lock()
	b.reconcileAll = true
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
		batch := b.dirty
		b.dirty = make(map[addr]struct{}, len(batch))
		all := b.reconcileAll
		b.reconcileAll = false
		barriers := b.barriers
		b.barriers = nil
		b.mu.Unlock()
		if all {
			for subj := range b.subs {
				if a, ok := b.interestAddr(subj); ok && a.kind != router.KindAll {
					batch[a] = struct{}{}
				}
			}
			if b.host.EachLocal != nil {
				b.host.EachLocal(func(kind router.Kind, name string) { batch[addr{kind: kind, name: name}] = struct{}{} })
			}
		}
		for a := range batch {
			b.reconcile(a)
		}
		for _, c := range barriers {
			close(c)
		}
	}
}

// reconcile makes the subscription of a match the router's registry now.
// A change racing with it marks a dirty again, so the next pass reads the
// newer truth.
func (b *Backplane) reconcile(a addr) {
	if a.kind == router.KindUser && b.opts.SharedUserInterest {
		return // the wildcard taken at Start covers every user
	}
	subj := b.interestSubject(a.kind, a.name)
	want := b.host.HasLocal != nil && b.host.HasLocal(a.kind, a.name)
	sub, have := b.subs[subj]
	switch {
	case want && !have:
		if err := b.subscribe(subj); err != nil {
			b.opts.Logger.Warn("nats subscribe failed", "subject", subj, "err", err)
		}
	case !want && have:
		_ = sub.Unsubscribe()
		delete(b.subs, subj)
		b.subscriptions.Add(-1)
	}
}

// userWildcard is the one subscription of every user address with
// Options.SharedUserInterest.
func (b *Backplane) userWildcard() string { return b.opts.Prefix + ".user.*" }

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
	// The pump and decode workers 1..n-1 (worker 0 is this goroutine,
	// whose own count keeps the group above zero).
	b.wg.Add(len(b.rx.workers))
	go b.pump()
	for _, w := range b.rx.workers[1:] {
		go b.runDecodeWorker(w)
	}
	b.receive()
}

// Close stops taking messages, hands on what Publish accepted (publishes
// and confirms it, so its senders hear the outcome while their loops still
// run), flushes the connection and closes it; all bounded by CloseTimeout.
func (b *Backplane) Close() error {
	b.pubMu.Lock()
	if b.pubClosed {
		b.pubMu.Unlock()
		return nil
	}
	b.pubClosed = true
	b.pubMu.Unlock()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	if b.nc == nil {
		return nil
	}
	deadline := time.NewTimer(b.opts.CloseTimeout)
	defer deadline.Stop()
	close(b.closing)
	var err error
	select {
	case <-b.pubDone:
		// Everything confirmed is on the server already; this pushes out
		// what else was written (heartbeats, unsubscribes). A connection
		// that is down has nothing to push.
		if b.nc.IsConnected() {
			if ferr := b.nc.FlushTimeout(b.opts.CloseTimeout); ferr != nil {
				err = fmt.Errorf("natsbp: close: flush: %w", ferr)
			}
		}
	case <-deadline.C:
		err = fmt.Errorf("natsbp: close: queued messages not handed on within %v", b.opts.CloseTimeout)
	}
	b.nc.Close() // unblocks a publisher stuck on a dead connection
	close(b.done)
	b.wg.Wait()
	// Anything still queued (a publisher cut short) is lost: say so.
	var rest []outbound
	for len(b.pubq) > 0 {
		rest = append(rest, <-b.pubq)
	}
	b.settle(nil, rest, router.ErrUnavailable)
	return err
}

// decode turns an inbound NATS message into rm, replacing all of it.
// Messages from services lack id and ts; the router stamps them. rm's
// strings and slices alias payload (codec.go).
func (b *Backplane) decode(subject string, payload []byte, rm *router.Remote) error {
	*rm = router.Remote{}
	kind, name, ok := b.address(subject)
	if !ok {
		return fmt.Errorf("natsbp: unknown subject %q", subject)
	}
	var m message
	if err := decodeMessage(payload, &m, false); err != nil {
		return fmt.Errorf("natsbp: payload on %s: %w", subject, err)
	}
	pri, err := parsePriority(m.priority)
	if err != nil {
		return fmt.Errorf("natsbp: payload on %s: %w %q", subject, err, m.priority)
	}
	*rm = router.Remote{Kind: kind, Name: name, Data: m.data, From: bstr(m.from), Filter: m.filter, ID: bstr(m.id),
		TS: m.ts, Priority: pri, Origin: bstr(m.origin)}
	if len(rm.Data) == 0 {
		rm.Data = nullJSON
	}
	return nil
}
