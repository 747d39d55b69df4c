package router

// Presence across instances (PROTOCOL.md section 3, `presence` row).
//
// Each instance knows its own room members (registry.roomUsers, readable
// from any goroutine). When the backplane implements PresenceQuerier, a
// `presence` request is answered with the union over instances: the loop
// reads the local users, hands them to PresenceQuerier.Presence, which asks
// the other instances on a backplane goroutine (NATS: scatter-gather,
// natsbp/presence.go; LocalHub: the other routers' registries) and calls
// back with the merged, sorted list; the callback posts the answer to the
// connection's loop, which checks the connection is still open. An instance
// that is gone simply does not answer, so its users drop out of the next
// query; how long a query waits is the backplane's (natsbp: the presence
// window, 100ms by default). When the backplane cannot ask (NATS down), the
// reply is `error unavailable`, never a silently partial list.

import (
	"sort"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// PresenceQuerier is the optional Backplane ability behind cross-instance
// presence, found by a type assertion on Options.Backplane.
type PresenceQuerier interface {
	// ServePresence gives the backplane this instance's local users of a
	// room (safe from any goroutine, sorted), to answer other instances.
	// The router calls it once, before Start.
	ServePresence(local func(room string) []string)
	// Presence asks the other instances for their users of room and calls
	// reply once, never on the caller's goroutine, with the sorted union of
	// theirs and local, or an error. It must not block.
	Presence(room string, local []string, reply func(users []string, err error))
}

// bindPresence wires the registry to a backplane that can ask others.
func (r *Router) bindPresence() {
	pq, ok := r.opts.Backplane.(PresenceQuerier)
	if !ok {
		return
	}
	pq.ServePresence(func(room string) []string { return r.reg.roomUsers([]byte(room)) })
	r.pq = pq
}

type presenceAnswer struct {
	cl    *client
	room  []byte
	id    []byte
	users []string
	err   error
}

// askPresence answers `presence` across instances (on cl's loop).
func (r *Router) askPresence(cl *client, e *wire.Envelope) {
	a := &presenceAnswer{cl: cl, room: append([]byte(nil), e.Room...)}
	if len(e.ID) > 0 {
		a.id = append([]byte(nil), e.ID...)
	}
	loop := cl.shard.loop
	r.pq.Presence(string(a.room), r.reg.roomUsers(e.Room), func(users []string, err error) {
		a.users, a.err = users, err
		loop.Post(engine.Task{Fn: presenceTask, Arg: a})
	})
}

func presenceTask(_ *engine.Loop, arg any) {
	a := arg.(*presenceAnswer)
	cl := a.cl
	if cl.conn.State() >= engine.StateClosing {
		return
	}
	s := cl.shard
	if a.err != nil {
		s.stats.BackplaneErrors++
		s.r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnavailable, Message: "presence unavailable"}, a.id)
		return
	}
	if a.users == nil {
		a.users = []string{}
	}
	s.out = cl.codec.AppendPresence(s.out[:0], a.room, a.users, a.id)
	s.write(cl, s.out)
}

// MergeUsers returns the sorted union of user lists, each user once.
func MergeUsers(lists ...[]string) []string {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	out := make([]string, 0, n)
	for _, l := range lists {
		out = append(out, l...)
	}
	sort.Strings(out)
	j := 0
	for i, u := range out {
		if i > 0 && u == out[j-1] {
			continue
		}
		out[j] = u
		j++
	}
	return out[:j]
}

// --- LocalHub ----------------------------------------------------------------

// ServePresence implements PresenceQuerier for the in-process hub.
func (b *hubBackplane) ServePresence(local func(room string) []string) { b.local = local }

// Presence asks every other member of the hub (their registries, directly).
func (b *hubBackplane) Presence(room string, local []string, reply func([]string, error)) {
	b.hub.mu.Lock()
	var others []func(string) []string
	for _, mem := range b.hub.members {
		if mem != b.me && mem.local != nil {
			others = append(others, mem.local)
		}
	}
	b.hub.mu.Unlock()
	go func() {
		lists := [][]string{local}
		for _, f := range others {
			lists = append(lists, f(room))
		}
		reply(MergeUsers(lists...), nil)
	}()
}

var _ PresenceQuerier = (*hubBackplane)(nil)
