package natsbp

// # Presence across instances (router/presence.go, router/tracker.go)
//
// The NATS side of router.PresenceTransport: it carries the presence
// trackers' messages and says which peers are alive; the state is the
// router's.
//
//   - <p>.pres.<room>: deltas, state transfers and queries of one room. An
//     instance subscribes while its tracker tracks the room (it has local
//     members there): TrackRoom, called from the router's presence
//     goroutine, which owns these subscriptions. NoEcho keeps an instance
//     from hearing itself.
//   - <p>.pres-inst: every instance's incarnation (PresenceHello), at start
//     and after each reconnect, which every instance subscribes to.
//   - <inbox>.<token>: answers to this instance's asks (a state transfer
//     with Ask) and queries; the token is the ask's. A query nobody tracks
//     gets NATS's no-responders status, which becomes PresenceNone.
//
// Every subscription feeds one channel (no goroutine per room); the
// presence goroutine here decodes and hands each message to the router,
// whose inbox is bounded in bytes. Should nats.go still drop (the channel
// full: slow consumer), the drops are counted and PresenceEpoch moves, so
// the tracker transfers every room again; so does a reconnect. Liveness is
// the heartbeat table of health.go: PeerAlive is "heard within
// InstanceTimeout". Messages are JSON; a state transfer is chunked by the
// tracker, and a message above the server's max payload is refused here
// (never silently cut).

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// DefaultPresenceWindow is how long a scattered control operation
// (disconnect, subscribe, unsubscribe, info) waits for the other
// instances' answers; presence itself no longer waits (control.go).
const DefaultPresenceWindow = 100 * time.Millisecond

// PresenceStats are the presence transport's counters.
type PresenceStats struct {
	Sent, Received, DecodeErrors, SlowDrops, TooLarge uint64
	Rooms                                             int
}

type presence struct {
	b      *Backplane
	prefix string // <p>.pres.
	inbox  string // this connection's reply prefix, ending in "."
	ch     chan *nats.Msg
	rooms  map[string]*nats.Subscription // owned by the router's presence goroutine
	inboxS *nats.Subscription
	helloS *nats.Subscription

	sent, received, decodeErrors, slowDrops, tooLarge atomic.Uint64
	nRooms                                            atomic.Int64

	// testHold, set by tests only, sees each decoded message before the
	// router does and may block, holding this instance's presence input
	// the way a slow network would (a late answer, deterministically).
	testHold atomic.Pointer[func(*router.PresenceMsg)]
}

var _ router.PresenceTransport = (*Backplane)(nil)

// ServeTracker sets where presence messages go (router.PresenceTransport; before Start).
func (b *Backplane) ServeTracker(in func(*router.PresenceMsg)) { b.presIn = in }

// PresenceStats returns the presence transport's counters.
func (b *Backplane) PresenceStats() PresenceStats {
	p := b.pres
	if p == nil {
		return PresenceStats{}
	}
	return PresenceStats{Sent: p.sent.Load(), Received: p.received.Load(), DecodeErrors: p.decodeErrors.Load(),
		SlowDrops: p.slowDrops.Load(), TooLarge: p.tooLarge.Load(), Rooms: int(p.nRooms.Load())}
}

func (b *Backplane) startPresence() error {
	if b.presIn == nil {
		return nil
	}
	p := &presence{b: b, prefix: b.opts.Prefix + ".pres.", inbox: nats.NewInbox() + ".",
		ch: make(chan *nats.Msg, 1<<16), rooms: map[string]*nats.Subscription{}}
	sub, err := b.nc.ChanSubscribe(p.inbox+"*", p.ch)
	if err != nil {
		return fmt.Errorf("natsbp: presence inbox: %w", err)
	}
	p.inboxS = sub
	if p.helloS, err = b.nc.ChanSubscribe(p.helloSubject(), p.ch); err != nil {
		return fmt.Errorf("natsbp: presence hello: %w", err)
	}
	b.pres = p
	b.wg.Add(1)
	go p.receive(b.presIn)
	return nil
}

// isPresenceSub reports whether sub is one of presence's (slow consumer
// accounting: its drops are presence's, repaired by a full transfer).
func (b *Backplane) isPresenceSub(sub *nats.Subscription) bool {
	return b.pres != nil && sub != nil && (sub == b.pres.inboxS || sub == b.pres.helloS || strings.HasPrefix(sub.Subject, b.pres.prefix))
}

// helloSubject carries every instance's incarnation (PresenceHello): its
// second token is not "pres", so no room's subject can be it.
func (p *presence) helloSubject() string {
	return strings.TrimSuffix(p.prefix, ".pres.") + ".pres-inst"
}

// presenceSlow counts a slow-consumer episode of a presence subscription.
func (b *Backplane) presenceSlow() { b.pres.slowDrops.Add(1) }

// TrackRoom implements router.PresenceTransport (the router's presence goroutine).
func (b *Backplane) TrackRoom(room string, on bool) error {
	p := b.pres
	if p == nil {
		return router.ErrUnavailable
	}
	sub, have := p.rooms[room]
	switch {
	case on && !have:
		s, err := b.nc.ChanSubscribe(p.prefix+room, p.ch)
		if err != nil {
			return fmt.Errorf("natsbp: presence subscribe %s: %w", room, err)
		}
		p.rooms[room] = s
	case !on && have:
		delete(p.rooms, room)
		if err := sub.Unsubscribe(); err != nil {
			return fmt.Errorf("natsbp: presence unsubscribe %s: %w", room, err)
		}
	}
	p.nRooms.Store(int64(len(p.rooms)))
	return nil
}

// presWire is a router.PresenceMsg on the wire.
type presWire struct {
	T     router.PresenceType `json:"t"`
	Room  string              `json:"r"`
	From  string              `json:"f"`
	Inc   uint64              `json:"i"`
	Epoch uint64              `json:"e,omitempty"`
	Seq   uint64              `json:"s,omitempty"`
	Query uint64              `json:"q,omitempty"`
	Ask   bool                `json:"a,omitempty"`
	Last  bool                `json:"l,omitempty"`
	Limit int                 `json:"lim,omitempty"`
	Users int                 `json:"nu,omitempty"`
	Conns int                 `json:"nc,omitempty"`
	Trunc bool                `json:"tr,omitempty"`
	Names []string            `json:"us,omitempty"`
	Count []int32             `json:"cs,omitempty"`
	Hold  []string            `json:"h,omitempty"` // an answer's Holders
}

// SendPresence implements router.PresenceTransport.
func (b *Backplane) SendPresence(m *router.PresenceMsg, to string) error {
	p := b.pres
	if p == nil || !b.Ready() {
		return router.ErrUnavailable
	}
	w := presWire{T: m.Type, Room: m.Room, From: m.From, Inc: m.Inc, Epoch: m.Epoch, Seq: m.Seq, Query: m.Query,
		Ask: m.Ask, Last: m.Last, Limit: m.Limit, Users: m.Users, Conns: m.Conns, Trunc: m.Truncated, Hold: m.Holders}
	if len(m.Entries) > 0 {
		w.Names, w.Count = make([]string, len(m.Entries)), make([]int32, len(m.Entries))
		for i, e := range m.Entries {
			w.Names[i], w.Count[i] = e.User, e.Conns
		}
	}
	data, jerr := json.Marshal(&w)
	if jerr != nil {
		return fmt.Errorf("natsbp: presence encode: %w", jerr)
	}
	if max := b.nc.MaxPayload(); max > 0 && int64(len(data)) > max {
		p.tooLarge.Add(1)
		return fmt.Errorf("natsbp: presence message of %d bytes is above the max payload %d", len(data), max)
	}
	subject, reply := to, ""
	if to == "" && m.Type == router.PresenceHello {
		subject = p.helloSubject()
	} else if to == "" {
		subject = p.prefix + m.Room
		if m.Type == router.PresenceQuery || (m.Type == router.PresenceState && m.Ask) {
			reply = p.inbox + strconv.FormatUint(m.Query, 36)
		}
	}
	var err error
	if reply == "" {
		err = b.nc.Publish(subject, data)
	} else {
		err = b.nc.PublishRequest(subject, reply, data)
	}
	if err != nil {
		return fmt.Errorf("natsbp: presence publish %q reply %q: %w", subject, reply, err)
	}
	p.sent.Add(1)
	return nil
}

// receive decodes presence messages and hands them to the router.
func (p *presence) receive(in func(*router.PresenceMsg)) {
	defer p.b.wg.Done()
	for {
		select {
		case <-p.b.done:
			return
		case m := <-p.ch:
			if pm := p.decode(m); pm != nil {
				if hold := p.testHold.Load(); hold != nil {
					(*hold)(pm)
				}
				p.received.Add(1)
				in(pm)
			}
		}
	}
}

func (p *presence) decode(m *nats.Msg) *router.PresenceMsg {
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		// No responders to an ask or a query: nobody tracks the room.
		if !strings.HasPrefix(m.Subject, p.inbox) {
			return nil
		}
		q, err := strconv.ParseUint(m.Subject[len(p.inbox):], 36, 64)
		if err != nil {
			return nil
		}
		return &router.PresenceMsg{Type: router.PresenceNone, Query: q}
	}
	var w presWire
	if err := json.Unmarshal(m.Data, &w); err != nil || len(w.Names) != len(w.Count) || w.From == "" {
		p.decodeErrors.Add(1)
		return nil
	}
	pm := &router.PresenceMsg{Type: w.T, Room: w.Room, From: w.From, Inc: w.Inc, Epoch: w.Epoch, Seq: w.Seq, Query: w.Query,
		Ask: w.Ask, Last: w.Last, Limit: w.Limit, Users: w.Users, Conns: w.Conns, Truncated: w.Trunc, Holders: w.Hold,
		ReplyTo: m.Reply}
	if len(w.Names) > 0 {
		pm.Entries = make([]router.PresenceEntry, len(w.Names))
		for i := range w.Names {
			pm.Entries[i] = router.PresenceEntry{User: w.Names[i], Conns: w.Count[i]}
		}
	}
	return pm
}

// PeerAlive implements router.PresenceTransport: heard on the heartbeat
// subject within InstanceTimeout.
func (b *Backplane) PeerAlive(id string) bool {
	return b.peers.heardSince(id, time.Now().Add(-b.opts.InstanceTimeout))
}

// PresenceTiming implements router.PresenceTransport.
func (b *Backplane) PresenceTiming() (heartbeat, timeout time.Duration) {
	return b.heartbeatInterval(), b.opts.InstanceTimeout
}

// PresenceEpoch implements router.PresenceTransport: it moves with every
// reconnect and every presence slow-consumer episode.
func (b *Backplane) PresenceEpoch() uint64 {
	n := b.connGen()
	if b.pres != nil {
		n += b.pres.slowDrops.Load()
	}
	return n
}
