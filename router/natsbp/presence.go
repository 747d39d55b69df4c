package natsbp

// # Presence across instances (router/presence.go)
//
// Scatter-gather over NATS request/reply, no shared state:
//
//   - Every instance subscribes to <p>.presence.> and answers a request on
//     <p>.presence.<room> with a JSON array of its local users of the room
//     (from the router's registry, on the NATS callback goroutine: no event
//     loop is involved); an instance with none stays silent.
//   - An asking instance (a client's `presence`) hands the query to the
//     presence goroutine, which publishes it with a reply subject under one
//     wildcard inbox of this connection, collects the answers for
//     PresenceWindow (default 100ms) and then calls the router back with the
//     sorted union of its own users and the answers. NoEcho keeps an
//     instance from answering itself.
//
// Drop-out bound: an instance that stopped, crashed or lost NATS does not
// answer, so its users are absent from every query that starts after that;
// a query already collecting may still count an answer sent just before, so
// a dead instance's users are gone from presence at most PresenceWindow
// after it died (graceful stop: its connections close first, so they are
// gone at once). The price: each query takes PresenceWindow, and an instance
// that cannot answer within it (a long GC pause, an overloaded link) is
// missing from that one answer. NATS down: `unavailable`.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// DefaultPresenceWindow is how long a presence query collects answers.
const DefaultPresenceWindow = 100 * time.Millisecond

// PresenceStats are the presence counters.
type PresenceStats struct {
	Queries, Answered, Replies, Errors uint64
}

type presence struct {
	b      *Backplane
	window time.Duration
	prefix string // <p>.presence.
	inbox  string // this connection's reply prefix, ending in "."
	q      chan *presAsk

	mu      sync.Mutex // guards pending and next
	pending map[string]*presAsk
	next    uint64

	queries, answered, replies, errors atomic.Uint64
}

type presAsk struct {
	room  string
	lists [][]string // local first, then the answers (under presence.mu)
	reply func([]string, error)
}

var _ router.PresenceQuerier = (*Backplane)(nil)

// ServePresence sets the source of this instance's local users (before Start).
func (b *Backplane) ServePresence(local func(room string) []string) { b.presLocal = local }

// PresenceStats returns the presence counters.
func (b *Backplane) PresenceStats() PresenceStats {
	p := b.pres
	if p == nil {
		return PresenceStats{}
	}
	return PresenceStats{Queries: p.queries.Load(), Answered: p.answered.Load(), Replies: p.replies.Load(), Errors: p.errors.Load()}
}

func (b *Backplane) startPresence() error {
	w := b.opts.PresenceWindow
	if w <= 0 {
		w = DefaultPresenceWindow
	}
	p := &presence{b: b, window: w, prefix: b.opts.Prefix + ".presence.", inbox: nats.NewInbox() + ".",
		q: make(chan *presAsk, 1024), pending: map[string]*presAsk{}}
	if local := b.presLocal; local != nil {
		if _, err := b.nc.Subscribe(p.prefix+">", func(m *nats.Msg) { p.serve(local, m) }); err != nil {
			return fmt.Errorf("natsbp: presence subscribe: %w", err)
		}
	}
	if _, err := b.nc.Subscribe(p.inbox+"*", p.collect); err != nil {
		return fmt.Errorf("natsbp: presence inbox: %w", err)
	}
	b.pres = p
	b.wg.Add(1)
	go p.asker()
	return nil
}

// serve answers another instance's query with this instance's users.
func (p *presence) serve(local func(string) []string, m *nats.Msg) {
	if m.Reply == "" || len(m.Subject) <= len(p.prefix) {
		return
	}
	users := local(m.Subject[len(p.prefix):])
	if len(users) == 0 {
		return
	}
	data, err := json.Marshal(users)
	if err != nil {
		return
	}
	if m.Respond(data) == nil {
		p.answered.Add(1)
	}
}

// collect adds one instance's answer to its query. A status message (503
// no responders: no other instance is subscribed, as when this one runs
// alone) is no answer, and no decode error either.
func (p *presence) collect(m *nats.Msg) {
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		return
	}
	var users []string
	if err := json.Unmarshal(m.Data, &users); err != nil {
		p.b.decodeErrors.Add(1)
		return
	}
	token := m.Subject[len(p.inbox):]
	p.mu.Lock()
	if a := p.pending[token]; a != nil {
		a.lists = append(a.lists, users)
		p.replies.Add(1)
	}
	p.mu.Unlock()
}

// Presence queues a query (router.PresenceQuerier); reply runs on the
// timer's goroutine, or on a new one when the query cannot be sent.
func (b *Backplane) Presence(room string, local []string, reply func([]string, error)) {
	p := b.pres
	if p == nil || !b.Ready() {
		go reply(nil, router.ErrUnavailable)
		return
	}
	select {
	case p.q <- &presAsk{room: room, lists: [][]string{local}, reply: reply}:
	default:
		p.errors.Add(1)
		go reply(nil, router.ErrUnavailable)
	}
}

func (p *presence) asker() {
	defer p.b.wg.Done()
	for {
		select {
		case <-p.b.done:
			return
		case a := <-p.q:
			p.mu.Lock()
			p.next++
			token := strconv.FormatUint(p.next, 36)
			p.pending[token] = a
			p.mu.Unlock()
			p.queries.Add(1)
			if err := p.b.nc.PublishRequest(p.prefix+a.room, p.inbox+token, nil); err != nil {
				p.mu.Lock()
				delete(p.pending, token)
				p.mu.Unlock()
				p.errors.Add(1)
				go a.reply(nil, router.ErrUnavailable)
				continue
			}
			time.AfterFunc(p.window, func() { p.finish(token) })
		}
	}
}

// finish ends a query's window and answers the router.
func (p *presence) finish(token string) {
	p.mu.Lock()
	a := p.pending[token]
	delete(p.pending, token)
	p.mu.Unlock()
	if a != nil {
		a.reply(router.MergeUsers(a.lists...), nil)
	}
}
