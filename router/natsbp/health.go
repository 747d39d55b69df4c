package natsbp

// # Readiness, heartbeats and peers
//
// An instance is ready (Ready, /readyz, Publish accepts) only while every
// instance that can receive its messages has its subscriptions on the NATS
// server. After a reconnect that takes two steps, both on the health
// goroutine:
//
//  1. Own subscriptions: nats.go re-sends every SUB on the new connection
//     before anything else; the interest goroutine then reconciles every
//     address with the registry, and a PING/PONG round trip proves the
//     server has processed them all. From here the instance heartbeats and
//     its clients get `gap` (Host.Resumed): whatever was addressed to them
//     while it was cut off may be missing.
//  2. Peers: every instance heard on <p>.inst.hb within InstanceTimeout
//     before the connection broke must be heard again on the new
//     connection, or stay silent for InstanceTimeout after step 1. An
//     instance heartbeats only while its subscriptions are restored, and
//     nats.go sends its SUBs before any PUB, so a peer's heartbeat means
//     its subscriptions are on the server before anything we publish next.
//     A peer that hears a restoring instance's first heartbeat ("hello")
//     answers at once, so step 2 usually takes one round trip.
//
// Heartbeats go every min(1s, InstanceTimeout/3) while restored; the peer
// table (Peers) is kept for other users of liveness (presence).
//
// The publisher double-checks: each batch is sent only if the connection
// it goes out on is the one the instance became ready on (nats.go's
// reconnect count), and fails if a reconnect happened before its
// confirmation; messages accepted before an outage are never sent after it
// (readiness epochs).

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// errReconnected fails a batch whose connection was replaced before it was
// confirmed (or before the instance was restored on the new one).
var errReconnected = errors.New("natsbp: connection replaced before the publish was confirmed")

// health is the backplane's readiness state.
type health struct {
	ready      atomic.Bool   // what Ready and Publish read
	readyEpoch atomic.Uint64 // incremented each time ready turns true
	readyGen   atomic.Uint64 // nats.go's reconnect count when ready last turned true
	restored   atomic.Bool   // own subscriptions on the server: heartbeat

	restoreKick chan struct{}
	peerKick    chan struct{}

	stateMu      sync.Mutex // guards the fields below; never held across I/O
	discEpoch    uint64     // connection losses seen
	expected     map[string]struct{}
	waiting      bool // restored, waiting for expected peers
	waitSince    time.Time
	waitUntil    time.Time
	waitGen      uint64
	waitEpoch    uint64
	heartbeatMsg []byte
	helloMsg     []byte
	hbSubject    string

	peers peerTable
}

func newHealth() health {
	return health{
		restoreKick: make(chan struct{}, 1),
		peerKick:    make(chan struct{}, 1),
		expected:    map[string]struct{}{},
		peers:       peerTable{m: map[string]time.Time{}},
	}
}

// heartbeatInterval is how often a restored instance says it is alive.
func (b *Backplane) heartbeatInterval() time.Duration {
	return min(time.Second, b.opts.InstanceTimeout/3)
}

// connGen is nats.go's reconnect count: it changes with every new
// connection. It takes nats.go's lock: never call it from an event loop.
func (b *Backplane) connGen() uint64 { return b.nc.Stats().Reconnects }

// startHealth subscribes to heartbeats, confirms the initial subscriptions
// and makes the instance ready.
func (b *Backplane) startHealth() error {
	b.hbSubject = b.opts.Prefix + ".inst.hb"
	b.heartbeatMsg = []byte(b.instance)
	b.helloMsg = []byte(b.instance + " hello")
	if _, err := b.nc.Subscribe(b.hbSubject, b.onHeartbeat); err != nil {
		return err
	}
	if err := b.nc.FlushTimeout(b.opts.ConfirmTimeout); err != nil {
		return err
	}
	b.readyGen.Store(b.connGen())
	b.readyEpoch.Add(1)
	b.restored.Store(true)
	b.ready.Store(true)
	b.sendHeartbeat(true)
	b.wg.Add(1)
	go b.healthLoop()
	return nil
}

// lostConnection runs from nats.go's disconnect and closed callbacks: not
// ready, no heartbeats, and remember which peers to wait for.
func (b *Backplane) lostConnection() {
	now := time.Now()
	b.stateMu.Lock()
	b.discEpoch++
	b.ready.Store(false)
	b.restored.Store(false)
	b.waiting = false
	for _, id := range b.peers.alive(now, b.opts.InstanceTimeout) {
		b.expected[id] = struct{}{}
	}
	b.stateMu.Unlock()
}

func (b *Backplane) kickRestore() {
	select {
	case b.restoreKick <- struct{}{}:
	default:
	}
}

func (b *Backplane) healthLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.heartbeatInterval())
	defer t.Stop()
	retry := false
	for {
		select {
		case <-b.done:
			return
		case <-b.restoreKick:
			retry = !b.restore()
		case <-b.peerKick:
			b.checkPeers()
		case <-t.C:
			if retry && b.nc.IsConnected() {
				retry = !b.restore()
			}
			if b.restored.Load() {
				b.sendHeartbeat(false)
			}
			b.checkPeers()
			b.peers.expire(time.Now(), 10*b.opts.InstanceTimeout)
		}
	}
}

// restore runs step 1 after a reconnect (see the top of this file). It
// reports false when it should be tried again.
func (b *Backplane) restore() bool {
	b.stateMu.Lock()
	epoch := b.discEpoch
	b.stateMu.Unlock()
	gen := b.connGen()
	start := time.Now()
	b.reconcileEverything()
	select {
	case <-b.interestBarrier():
	case <-b.done:
		return true
	}
	if err := b.nc.FlushTimeout(b.opts.ConfirmTimeout); err != nil {
		b.opts.Logger.Warn("nats: restoring subscriptions failed", "err", err)
		return false
	}
	if b.connGen() != gen {
		return true // replaced again: its reconnect restores it
	}
	b.stateMu.Lock()
	if b.discEpoch != epoch {
		b.stateMu.Unlock()
		return true
	}
	b.restored.Store(true)
	b.waiting = true
	b.waitSince, b.waitUntil = start, time.Now().Add(b.opts.InstanceTimeout)
	b.waitGen, b.waitEpoch = gen, epoch
	b.stateMu.Unlock()
	b.sendHeartbeat(true)
	if b.host.Resumed != nil {
		b.host.Resumed()
	}
	b.checkPeers()
	return true
}

// checkPeers finishes step 2: ready once every expected peer was heard
// since the restoration, or InstanceTimeout passed.
func (b *Backplane) checkPeers() {
	now := time.Now()
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if !b.waiting || b.discEpoch != b.waitEpoch {
		return
	}
	var missing []string
	for id := range b.expected {
		if !b.peers.heardSince(id, b.waitSince) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 && now.Before(b.waitUntil) {
		return
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		b.opts.Logger.Warn("nats: ready without peers silent since the reconnect", "peers", missing, "waited", b.opts.InstanceTimeout)
	}
	b.waiting = false
	clear(b.expected)
	b.readyGen.Store(b.waitGen)
	b.readyEpoch.Add(1)
	b.ready.Store(true)
	b.opts.Logger.Info("nats: ready again")
}

// sendHeartbeat publishes this instance's heartbeat ("<id>", or
// "<id> hello" when it has just restored and wants answers).
func (b *Backplane) sendHeartbeat(hello bool) {
	msg := b.heartbeatMsg
	if hello {
		msg = b.helloMsg
	}
	_ = b.nc.Publish(b.hbSubject, msg)
}

// onHeartbeat records a peer (nats.go's subscription goroutine).
func (b *Backplane) onHeartbeat(m *nats.Msg) {
	id, hello := strings.CutSuffix(string(m.Data), " hello")
	if id == "" || id == b.instance {
		return
	}
	b.peers.heard(id, time.Now())
	if hello && b.restored.Load() {
		b.sendHeartbeat(false)
	}
	select {
	case b.peerKick <- struct{}{}:
	default:
	}
}

// Peers returns the ids of the other instances heard within
// InstanceTimeout, sorted.
func (b *Backplane) Peers() []string {
	ids := b.peers.alive(time.Now(), b.opts.InstanceTimeout)
	sort.Strings(ids)
	return ids
}

// peerTable is when each other instance was last heard.
type peerTable struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (p *peerTable) heard(id string, now time.Time) {
	p.mu.Lock()
	p.m[id] = now
	p.mu.Unlock()
}

func (p *peerTable) heardSince(id string, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, ok := p.m[id]
	return ok && !last.Before(t)
}

func (p *peerTable) alive(now time.Time, timeout time.Duration) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, last := range p.m {
		if now.Sub(last) <= timeout {
			ids = append(ids, id)
		}
	}
	return ids
}

// expire forgets instances silent for longer than age (ids are random per
// process, so the table would otherwise grow with every restart).
func (p *peerTable) expire(now time.Time, age time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, last := range p.m {
		if now.Sub(last) > age {
			delete(p.m, id)
		}
	}
}
