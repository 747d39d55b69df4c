package router

import (
	"errors"
	"sync"
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
	Priority Priority
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
}

// ErrUnavailable means the backplane cannot take messages now (NATS down);
// the client gets `error unavailable`, never a silent loss.
var ErrUnavailable = errors.New("router: backplane unavailable")

// Backplane connects gateway instances so they act as one.
//
// Guarantee: Publish hands m to every OTHER instance that declared interest
// in its address (Interest), at most once each, and never back to the
// publisher: the publishing router has already delivered to its own local
// receivers. Delivery is at most once and in publish order per publisher and
// address. Publish must not block the calling event loop; it returns
// ErrUnavailable when the message cannot be accepted.
//
// Deliver, given to Start, is called from the backplane's own goroutines with
// messages from other instances; it must not block (the router only posts
// to its event loops there).
type Backplane interface {
	Start(instanceID string, deliver func(*Remote)) error
	Publish(m *Remote) error
	// Interest says this instance now has (on) or no longer has (off) local
	// receivers for the address. Implementations may batch the changes.
	Interest(kind Kind, name string, on bool)
	Close() error
}

// LocalHub is an in-process backplane: several routers in one process
// (tests, or one binary running several listeners) share it as if they were
// instances on a NATS cluster. It honours interest, so a test sees the same
// one-message-per-interested-instance behaviour as NATS.
type LocalHub struct {
	mu      sync.Mutex
	members map[string]*hubMember
}

type hubMember struct {
	id       string
	deliver  func(*Remote)
	interest map[Kind]map[string]bool
	local    func(room string) []string // presence (presence.go)
}

// NewLocalHub returns an empty hub.
func NewLocalHub() *LocalHub { return &LocalHub{members: map[string]*hubMember{}} }

// Join returns a Backplane attached to the hub.
func (h *LocalHub) Join() Backplane { return &hubBackplane{hub: h} }

// Published counts messages the hub handed to members, for tests.
type hubBackplane struct {
	hub   *LocalHub
	me    *hubMember
	local func(room string) []string // set by ServePresence before Start
}

func (b *hubBackplane) Start(id string, deliver func(*Remote)) error {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if _, dup := b.hub.members[id]; dup {
		return errors.New("router: local hub: duplicate instance id " + id)
	}
	b.me = &hubMember{id: id, deliver: deliver, interest: map[Kind]map[string]bool{}, local: b.local}
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
		cp.Data = append([]byte(nil), m.Data...)
		cp.Filter = append([]byte(nil), m.Filter...)
		t.deliver(&cp)
	}
	return nil
}

func (b *hubBackplane) Interest(kind Kind, name string, on bool) {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if b.me == nil {
		return
	}
	m := b.me.interest[kind]
	if m == nil {
		m = map[string]bool{}
		b.me.interest[kind] = m
	}
	if on {
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
