package router

// LocalHub's PresenceTransport: the routers of one process exchange
// presence messages directly, with the same semantics as over NATS. A
// member that closed is gone at once (PeerAlive false), so its users leave
// on the next tick; heartbeats are simulated by timing only.

import "time"

// Timing of presence on a LocalHub: short, so that tests see the grace
// (one "heartbeat") and a lost member quickly.
const (
	hubHeartbeat       = 50 * time.Millisecond
	hubInstanceTimeout = 150 * time.Millisecond
)

// hubPresence is a member's presence side (under LocalHub.mu).
type hubPresence struct {
	in    func(*PresenceMsg)
	rooms map[string]bool
}

var _ PresenceTransport = (*hubBackplane)(nil)

// ServeTracker implements PresenceTransport.
func (b *hubBackplane) ServeTracker(in func(*PresenceMsg)) { b.presIn = in }

// TrackRoom implements PresenceTransport.
func (b *hubBackplane) TrackRoom(room string, on bool) error {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if b.me == nil {
		return ErrUnavailable
	}
	if on {
		b.me.presence.rooms[room] = true
	} else {
		delete(b.me.presence.rooms, room)
	}
	return nil
}

// SendPresence implements PresenceTransport: to the members tracking the
// room, or to the member named by to.
func (b *hubBackplane) SendPresence(m *PresenceMsg, to string) error {
	b.hub.mu.Lock()
	if b.me == nil {
		b.hub.mu.Unlock()
		return ErrUnavailable
	}
	var targets []func(*PresenceMsg)
	for id, mem := range b.hub.members {
		if mem == b.me || mem.presence.in == nil {
			continue
		}
		hello := m.Type == PresenceHello && to == ""
		if hello || (to == "" && mem.presence.rooms[m.Room]) || (to != "" && id == to) {
			targets = append(targets, mem.presence.in)
		}
	}
	self := b.me.presence.in
	b.hub.mu.Unlock()
	wantsAnswer := m.Type == PresenceQuery || (m.Type == PresenceState && m.Ask)
	for _, in := range targets {
		cp := *m
		if wantsAnswer {
			cp.ReplyTo = b.me.id
		}
		in(&cp)
	}
	if len(targets) == 0 && wantsAnswer && self != nil {
		self(&PresenceMsg{Type: PresenceNone, Room: m.Room, Query: m.Query})
	}
	return nil
}

// PeerAlive implements PresenceTransport: a member is alive until it closes.
func (b *hubBackplane) PeerAlive(id string) bool {
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	_, ok := b.hub.members[id]
	return ok
}

// PresenceTiming implements PresenceTransport.
func (b *hubBackplane) PresenceTiming() (time.Duration, time.Duration) {
	return hubHeartbeat, hubInstanceTimeout
}

// PresenceEpoch implements PresenceTransport: a hub connection is never replaced.
func (b *hubBackplane) PresenceEpoch() uint64 { return 0 }
