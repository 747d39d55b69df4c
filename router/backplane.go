package router

import (
	"errors"
	"sync"

	"github.com/wsgate/wsgate/wire"
)

// Kind says what a published message is addressed to.
type Kind uint8

// Address kinds (PROTOCOL.md section 5: gw.room.<r>, gw.user.<u>, gw.chan.<c>, gw.all).
const (
	KindRoom Kind = iota
	KindUser
	KindChannel
	KindAll
)

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindChannel:
		return "channel"
	case KindAll:
		return "all"
	}
	return "room"
}

// Remote is a message crossing the backplane: what one instance tells the
// others to deliver. Data is always JSON (the backplane's lingua franca);
// receivers transcode once per codec in use.
type Remote struct {
	Kind     Kind
	Name     string // room, user or channel; empty for KindAll
	From     string // user id or service name; may be empty
	Data     []byte // raw JSON value
	ID       string // gateway message id, unique across instances
	TS       int64  // unix milliseconds
	Priority wire.Priority
	Filter   []byte // raw JSON filter object, may be empty
	Origin   string // instance id of the publisher
	// Seq is the message's history sequence (the JetStream stream sequence)
	// in history mode, 0 otherwise (history.go).
	Seq uint64
	// OriginConn is the publishing connection (engine.Conn.ID) of a client
	// message in history mode: the message comes back to its own instance
	// through the stream, and that connection is skipped there.
	OriginConn uint64
	// Dropped, when not 0, makes this no message but a notice: the
	// backplane lost Dropped messages for the address (Kind, Name) before
	// delivery (it fell behind); the router counts them and tells the
	// address's local receivers with `gap`.
	Dropped uint64
	// Confirm, when set, is told the message's fate (Backplane.Publish);
	// ConfirmSeq is its number in that Confirmer's sequence.
	Confirm    Confirmer
	ConfirmSeq uint64
}

// ErrUnavailable means the backplane cannot take messages now (NATS down);
// the client gets `error unavailable`, never a silent loss.
var ErrUnavailable = errors.New("router: backplane unavailable")

// Confirmer learns the fate of published messages (Remote.Confirm). The
// router gives each event loop one, so that a client's ack waits until the
// message is safe (docs/architecture.md, "Delivery guarantee").
type Confirmer interface {
	// Confirmed settles every message published with this Confirmer whose
	// ConfirmSeq is at most upTo and that was not settled before: err nil
	// means the message reached the backplane (the NATS server processed
	// it), otherwise it may be lost. Calls for one Confirmer come in
	// ConfirmSeq order, from backplane goroutines (or from inside Publish);
	// it must not block.
	Confirmed(upTo uint64, err error)
}

// Host is what a backplane needs from the router it serves; Router.Bind
// passes it to Start. Every function is safe from any goroutine and never
// blocks.
type Host struct {
	// Deliver takes a message from another instance (it only posts to
	// event loops). The *Remote itself is lent for the call only (natsbp
	// reuses one for every message); the strings and slices in it stay
	// valid and unchanged, so Deliver may keep those but copies the struct.
	Deliver func(*Remote)
	// HasLocal reports whether this instance has local receivers of the
	// address right now: the registry's truth, which interest
	// reconciliation follows (Backplane.Interest only says "look again").
	HasLocal func(kind Kind, name string) bool
	// EachLocal calls fn for every address with local receivers, to
	// reconcile everything (after a reconnect).
	EachLocal func(fn func(kind Kind, name string))
	// Resumed says the backplane lost its connection and has its
	// subscriptions back: messages for local receivers sent in between may
	// be missing, and the router tells every client (a `gap` message).
	Resumed func()
}

// Backplane connects gateway instances so they act as one.
//
// Guarantee: Publish hands m to every OTHER instance that declared interest
// in its address (Interest), at most once each, and never back to the
// publisher: the publishing router has already delivered to its own local
// receivers. Delivery is at most once and in publish order per publisher and
// address. Publish must not block the calling event loop; it returns
// ErrUnavailable when the message cannot be accepted. When it accepts a
// message with m.Confirm set, it later calls m.Confirm.Confirmed exactly
// once covering m.ConfirmSeq: nil once every instance that was subscribed
// and connected can get it, an error when it may be lost.
//
// Host.Deliver, given to Start, is called from the backplane's own
// goroutines with messages from other instances.
type Backplane interface {
	Start(instanceID string, host Host) error
	Publish(m *Remote) error
	// Interest says the local receivers of the address may have changed
	// (a first one joined, or the last one left). It is level-triggered:
	// the backplane re-reads Host.HasLocal and subscribes or unsubscribes
	// to match, so calls racing from several loops cannot leave the
	// subscription wrong. Implementations may batch the changes.
	Interest(kind Kind, name string)
	// Close stops the backplane after handing on what Publish accepted
	// (bounded by a timeout).
	Close() error
}

// LocalHub is an in-process backplane: several routers in one process
// (tests, or one binary running several listeners) share it as if they were
// instances on a NATS cluster. It honours interest, so a test sees the same
// one-message-per-interested-instance behaviour as NATS. Delivery is
// synchronous, so a message is confirmed when Publish returns.
type LocalHub struct {
	mu      sync.Mutex // guards members and every member's interest
	members map[string]*hubMember
}

type hubMember struct {
	id       string
	host     Host
	interest map[Kind]map[string]bool
	presence hubPresence // presence_hub.go
}

// NewLocalHub returns an empty hub.
func NewLocalHub() *LocalHub { return &LocalHub{members: map[string]*hubMember{}} }

// Join returns a Backplane attached to the hub.
func (h *LocalHub) Join() Backplane { return &hubBackplane{hub: h} }

type hubBackplane struct {
	hub    *LocalHub
	me     *hubMember
	presIn func(*PresenceMsg) // set by ServeTracker before Start (presence_hub.go)
}

func (b *hubBackplane) Start(id string, host Host) error {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if _, dup := b.hub.members[id]; dup {
		return errors.New("router: local hub: duplicate instance id " + id)
	}
	b.me = &hubMember{id: id, host: host, interest: map[Kind]map[string]bool{}, presence: hubPresence{in: b.presIn, rooms: map[string]bool{}}}
	b.hub.members[id] = b.me
	return nil
}

func (b *hubBackplane) Publish(m *Remote) error {
	b.hub.mu.Lock()
	targets := make([]*hubMember, 0, len(b.hub.members))
	for id, mem := range b.hub.members {
		if id == m.Origin {
			continue
		}
		if m.Kind == KindAll || mem.interest[m.Kind][m.Name] {
			targets = append(targets, mem)
		}
	}
	b.hub.mu.Unlock()
	for _, t := range targets {
		cp := *m
		cp.Confirm, cp.ConfirmSeq = nil, 0
		cp.Data = append([]byte(nil), m.Data...)
		cp.Filter = append([]byte(nil), m.Filter...)
		t.host.Deliver(&cp)
	}
	if m.Confirm != nil {
		m.Confirm.Confirmed(m.ConfirmSeq, nil)
	}
	return nil
}

// Interest sets the member's interest in the address to the registry's
// truth, read under the hub's lock: whichever racing call takes the lock
// last reads the state after every change that preceded a call.
func (b *hubBackplane) Interest(kind Kind, name string) {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if b.me == nil || b.me.host.HasLocal == nil {
		return
	}
	m := b.me.interest[kind]
	if m == nil {
		m = map[string]bool{}
		b.me.interest[kind] = m
	}
	if b.me.host.HasLocal(kind, name) {
		m[name] = true
	} else {
		delete(m, name)
	}
}

func (b *hubBackplane) Close() error {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if b.me != nil {
		delete(b.hub.members, b.me.id)
	}
	return nil
}

var _ Backplane = (*hubBackplane)(nil)

// Syncer is a Backplane that can say when what this instance did so far
// took effect: the router holds back the answers to auth, join and
// subscribe, and to a client's close frame, until then (settle.go).
type Syncer interface {
	// Sync calls done, from a backplane goroutine, once (1) every Interest
	// call and every Publish accepted before Sync are in effect on the
	// server (subscriptions processed, messages confirmed or failed) and
	// (2) every message the server sent this instance before that point
	// has been handed to Host.Deliver. It must not block, nor must done;
	// when the backplane cannot finish (disconnected, closing) it calls
	// done anyway: its outage gap covers the rest.
	Sync(done func())
}

// Requester is the optional Backplane ability behind a client's `rpc`
// (rpc.go): requests to the services behind the gateway. The router finds
// it by a type assertion; without it (standalone, LocalHub) every rpc is
// answered `error unavailable`.
type Requester interface {
	// ServeReplies sets where replies go; the router calls it once, before
	// Start. reply runs on a backplane goroutine with the token the
	// request was sent with; it must not block (it posts to a loop).
	ServeReplies(reply func(token uint64, rep RPCReply))
	// Request sends req and returns at once: an error (ErrUnavailable)
	// when it cannot be sent now, else the answer comes through the reply
	// function, at most once per request, unless nothing answers (the
	// router times the request out). It takes ownership of req.
	Request(req *RPCRequest) error
}
