package faults

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// churnSize is how big a churn run is.
type churnSize struct {
	users    int           // users reconnecting all the time
	rooms    int           // each user joins room user%rooms on every connection
	senders  int           // sender connections, alternating between the instances
	rate     int           // messages per second per sender
	duration time.Duration // how long the senders send
	loops    int           // event loops per gateway
}

// churnSizeOf is the churn run for size: reduced is a few seconds of
// traffic (part of `make test`), full is `make faults`.
func churnSizeOf(size suiteSize) churnSize {
	return pick(size,
		churnSize{users: 8, rooms: 4, senders: 2, rate: 250, duration: 4 * time.Second, loops: 2},
		churnSize{users: 32, rooms: 8, senders: 4, rate: 400, duration: 15 * time.Second, loops: 3})
}

// churnFrame is a gateway message as the churn test reads it: the suite's
// frameMsg plus what auth:ok tells (conn, instance), which the ledger
// records to explain a loss.
type churnFrame struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Room     string          `json:"room"`
	To       string          `json:"to"`
	From     string          `json:"from"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	Conn     string          `json:"conn"`
	Instance string          `json:"instance"`
	Reason   string          `json:"reason"`
	Dropped  int             `json:"dropped"`
	Data     json.RawMessage `json:"data"`
}

// churnPayload is the data of every test message: its key, unique per
// message across the run.
type churnPayload struct {
	K string `json:"k"`
}

// churnSent is one message a sender sent, and what became of it.
type churnSent struct {
	key       string
	kind      string   // "send" (to a user) or "room"
	target    string   // the user or the room
	receivers []string // the churn users who must get it once acked
	sender    string   // the sender connection's gateway
	sentAt    time.Duration
	ackAt     time.Duration
	acked     bool
	errCode   string
	delivered int // the send ack's count of local connections of the user
}

// churnConn is one connection of a churning user and its timeline.
type churnConn struct {
	user     string
	gateway  string
	ws       *websocket.Conn
	auth     chan struct{} // closed at auth:ok
	joined   chan struct{} // closed at joined
	done     chan struct{} // closed when the reader ended
	seen     map[string]bool
	joinOnce sync.Once

	// Under the ledger's mutex.
	conn, instance                               string
	dialAt, authAt, joinedAt, closeSentAt, endAt time.Duration
	closeCode                                    int
	readErr                                      string
}

// churnLedger counts everything the run sent and received.
type churnLedger struct {
	start time.Time

	mu        sync.Mutex
	sent      map[string]*churnSent
	order     []*churnSent
	recv      map[string]map[string]int // user -> key -> connections that got it
	dupes     int                       // a message twice on one connection
	gaps      map[string][]churnFrame   // user -> gap messages
	errs      []string                  // protocol errors anywhere
	conns     map[string][]*churnConn   // user -> connections in order
	reconnect int
}

func churnNewLedger() *churnLedger {
	return &churnLedger{start: time.Now(), sent: map[string]*churnSent{}, recv: map[string]map[string]int{},
		gaps: map[string][]churnFrame{}, conns: map[string][]*churnConn{}}
}

func (l *churnLedger) now() time.Duration { return time.Since(l.start) }

// churnDial opens a connection for user on g (token on the upgrade, so
// auth:ok is the first message) and starts its reader.
func churnDial(l *churnLedger, g *gateway, user, tok string) (*churnConn, error) {
	c := &churnConn{user: user, gateway: g.name, auth: make(chan struct{}), joined: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	l.mu.Lock()
	c.dialAt = l.now()
	l.conns[user] = append(l.conns[user], c)
	l.mu.Unlock()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws://"+g.Addr+"/ws?token="+tok, nil)
	if err != nil {
		close(c.done)
		return nil, fmt.Errorf("dial %s as %s: %w", g.name, user, err)
	}
	c.ws = ws
	go c.read(l)
	return c, nil
}

// read records everything the connection receives until it ends.
func (c *churnConn) read(l *churnLedger) {
	defer close(c.done)
	authed := false
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			l.mu.Lock()
			c.endAt = l.now()
			c.readErr = err.Error()
			if ce, ok := err.(*websocket.CloseError); ok {
				c.closeCode = ce.Code
			}
			l.mu.Unlock()
			return
		}
		var f churnFrame
		if err := json.Unmarshal(b, &f); err != nil {
			l.mu.Lock()
			l.errs = append(l.errs, fmt.Sprintf("%s: bad JSON %q", c.user, b))
			l.mu.Unlock()
			continue
		}
		l.mu.Lock()
		switch f.Type {
		case "auth:ok":
			c.conn, c.instance, c.authAt = f.Conn, f.Instance, l.now()
			if !authed {
				authed = true
				close(c.auth)
			}
		case "joined":
			c.joinedAt = l.now()
			c.joinOnce.Do(func() { close(c.joined) })
		case "message":
			var p churnPayload
			_ = json.Unmarshal(f.Data, &p)
			if c.seen[p.K] {
				l.dupes++
			} else {
				c.seen[p.K] = true
				m := l.recv[c.user]
				if m == nil {
					m = map[string]int{}
					l.recv[c.user] = m
				}
				m[p.K]++
			}
		case "gap":
			l.gaps[c.user] = append(l.gaps[c.user], f)
		default:
			l.errs = append(l.errs, fmt.Sprintf("%s on %s: unexpected %s", c.user, c.gateway, b))
		}
		l.mu.Unlock()
	}
}

// wait waits for ch (auth:ok, joined) or the connection's end.
func (c *churnConn) wait(ch chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-c.done:
		return fmt.Errorf("%s on %s: connection ended before %s", c.user, c.gateway, what)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s on %s: %s: %w (10s)", c.user, c.gateway, what, errNothing)
	}
}

// join joins room and waits for the reply.
func (c *churnConn) join(room string) error {
	msg := fmt.Sprintf(`{"type":"join","room":%q,"id":"j"}`, room)
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return fmt.Errorf("%s: join: %w", c.user, err)
	}
	return c.wait(c.joined, "joined")
}

// closeHandshake sends close 1000 and reads until the gateway's close frame
// (the reader records it): messages before it still count.
func (c *churnConn) closeHandshake(l *churnLedger) error {
	l.mu.Lock()
	c.closeSentAt = l.now()
	l.mu.Unlock()
	err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(5*time.Second))
	if err == nil {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("no close frame within 10s")
		}
	}
	_ = c.ws.Close()
	<-c.done
	l.mu.Lock()
	code := c.closeCode
	l.mu.Unlock()
	if err == nil && code != websocket.CloseNormalClosure {
		err = fmt.Errorf("closed with %d, want 1000", code)
	}
	if err != nil {
		return fmt.Errorf("%s: close conn %s on %s: %w", c.user, c.conn, c.gateway, err)
	}
	return nil
}

// churnUser keeps user connected and reconnecting, make-before-break, until
// stop is closed: each new connection authenticates and joins the user's
// room before the old one is closed. Even users switch instance every
// time, odd users every second time (same instance, usually another event
// loop). It returns the open connection it ends with.
func churnUser(l *churnLedger, gws []*gateway, i int, user, tok, room string, started chan<- error, stop <-chan struct{}) (*churnConn, error) {
	gatewayFor := func(cycle int) *gateway {
		if i%2 == 1 {
			cycle /= 2
		}
		return gws[(i+cycle)%len(gws)]
	}
	connect := func(cycle int) (*churnConn, error) {
		c, err := churnDial(l, gatewayFor(cycle), user, tok)
		if err != nil {
			return nil, err
		}
		if err := c.wait(c.auth, "auth:ok"); err != nil {
			_ = c.ws.Close()
			return nil, err
		}
		if err := c.join(room); err != nil {
			_ = c.ws.Close()
			return nil, err
		}
		return c, nil
	}
	cur, err := connect(0)
	started <- err
	if err != nil {
		return nil, err
	}
	for cycle := 1; ; cycle++ {
		select {
		case <-stop:
			return cur, nil
		default:
		}
		next, err := connect(cycle)
		if err != nil {
			return cur, err
		}
		if err := cur.closeHandshake(l); err != nil {
			return next, err
		}
		l.mu.Lock()
		l.reconnect++
		l.mu.Unlock()
		cur = next
	}
}

// churnSender joins every room on g, then sends count messages at rate per
// second, alternating `send` to a user and `message` to a room, and
// records acks and errors. It returns once everything is answered (or 15 s
// after the last send).
func churnSender(l *churnLedger, g *gateway, idx int, tok string, sz churnSize, users, rooms []string, members map[string][]string) error {
	name := fmt.Sprintf("sender%d", idx)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws://"+g.Addr+"/ws?token="+tok, nil)
	if err != nil {
		return fmt.Errorf("%s: dial %s: %w", name, g.name, err)
	}
	defer ws.Close()
	joined := map[string]bool{}
	answered := make(chan struct{}, 1)
	readDone := make(chan struct{})
	outstanding := 0 // under l.mu
	go func() {
		defer close(readDone)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f churnFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			l.mu.Lock()
			switch f.Type {
			case "joined":
				joined[f.Room] = true
			case "ack", "error":
				if s := l.sent[f.ID]; s != nil && !s.acked && s.errCode == "" {
					if f.Type == "ack" {
						s.acked, s.ackAt = true, l.now()
						var a struct {
							Delivered int `json:"delivered"`
						}
						_ = json.Unmarshal(b, &a)
						s.delivered = a.Delivered
					} else {
						s.errCode, s.ackAt = f.Code, l.now()
					}
					outstanding--
				} else if f.Type == "error" {
					l.errs = append(l.errs, fmt.Sprintf("%s: %s", name, b))
				}
			case "auth:ok", "message":
			default:
				l.errs = append(l.errs, fmt.Sprintf("%s: unexpected %s", name, b))
			}
			l.mu.Unlock()
			select {
			case answered <- struct{}{}:
			default:
			}
		}
	}()
	for _, r := range rooms {
		if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"join","room":%q,"id":"j-%s"}`, r, r)); err != nil {
			return fmt.Errorf("%s: join: %w", name, err)
		}
	}
	if msg := pollUntil(10*time.Second, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(joined) < len(rooms) {
			return fmt.Sprintf("%s joined %d of %d rooms", name, len(joined), len(rooms))
		}
		return ""
	}); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	count := int(float64(sz.rate) * sz.duration.Seconds())
	begin := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n := 0; n < count; {
		due := min(count, int(time.Since(begin).Seconds()*float64(sz.rate))+1)
		for ; n < due; n++ {
			s := &churnSent{key: fmt.Sprintf("s%d-%d", idx, n), sender: g.name}
			var frame []byte
			if n%2 == 0 {
				u := users[(n/2+idx)%len(users)]
				s.kind, s.target, s.receivers = "send", u, []string{u}
				frame = fmt.Appendf(nil, `{"type":"send","to":%q,"data":{"k":%q},"id":%q}`, u, s.key, s.key)
			} else {
				r := rooms[(n/2+idx)%len(rooms)]
				s.kind, s.target, s.receivers = "room", r, members[r]
				frame = fmt.Appendf(nil, `{"type":"message","room":%q,"data":{"k":%q},"id":%q}`, r, s.key, s.key)
			}
			l.mu.Lock()
			s.sentAt = l.now()
			l.sent[s.key] = s
			l.order = append(l.order, s)
			outstanding++
			l.mu.Unlock()
			if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
				return fmt.Errorf("%s: write: %w", name, err)
			}
		}
		<-tick.C
	}
	deadline := time.After(15 * time.Second)
	for {
		l.mu.Lock()
		left := outstanding
		l.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-answered:
		case <-readDone:
			return fmt.Errorf("%s: connection ended with %d messages unanswered", name, left)
		case <-deadline:
			return fmt.Errorf("%s: %d messages unanswered 15s after the last send", name, left)
		}
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// churnMissing lists, for every acked message, the receivers that have not
// got it (and are not excused by a gap they were sent). Call with l.mu held.
func (l *churnLedger) churnMissingLocked() (missing []string, excused int) {
	for _, s := range l.order {
		if !s.acked {
			continue
		}
		for _, u := range s.receivers {
			if l.recv[u][s.key] > 0 {
				continue
			}
			if len(l.gaps[u]) > 0 {
				excused++
				continue
			}
			missing = append(missing, u+"\x00"+s.key)
		}
	}
	return missing, excused
}

// churnMissedByOpenLocked counts the deliveries that a connection ready
// throughout (auth:ok, and joined for a room message, read before the send;
// its close sent after the ack) did not get: auth:ok and joined promise
// every acked message from then on, on that connection (a `send` goes to
// every connection of the user). Call with l.mu held.
func (l *churnLedger) churnMissedByOpenLocked() (checked, missed int, example string) {
	for _, s := range l.order {
		if !s.acked {
			continue
		}
		for _, u := range s.receivers {
			if len(l.gaps[u]) > 0 {
				continue
			}
			for _, c := range l.conns[u] {
				ready := c.authAt
				if s.kind == "room" {
					ready = c.joinedAt
				}
				if ready == 0 || ready >= s.sentAt || c.closeSentAt != 0 && c.closeSentAt <= s.ackAt {
					continue
				}
				checked++
				if c.seen[s.key] {
					continue
				}
				missed++
				if example == "" {
					example = fmt.Sprintf("%s missed on conn %s of %s", s.key, c.conn, u)
				}
			}
		}
	}
	return checked, missed, example
}

// TestChurnReconnectAcrossLoopsAndInstances is issue 9's fault scenario
// "reconnect churn across loops and instances (0 lost)": users reconnect
// make-before-break across two gateway instances (and their event loops)
// while senders on both instances send acked direct and room messages to
// them. Every acked message must reach each of its receivers on one of the
// connections that was open while it was sent, unless that receiver was
// told with `gap` (docs/architecture.md, "Delivery guarantee").
func TestChurnReconnectAcrossLoopsAndInstances(t *testing.T) {
	size := sizeOf(t)
	sz := churnSizeOf(size)
	natsURL := startNATS(t, 0).ClientURL()
	var gws []*gateway
	for _, name := range []string{"churn-a", "churn-b"} {
		gws = append(gws, startGateway(t, name, nil, gatewayArgs(natsURL,
			"-instance-id", name,
			"-loops", strconv.Itoa(sz.loops),
			"-rate-msgs", "0", "-rate-bytes", "0",
			"-drain-time", "0s")...))
	}
	for _, g := range gws {
		waitUntil(t, 20*time.Second, func() string {
			if !g.ready() {
				return fmt.Sprintf("gateway %s not ready (/readyz)", g.name)
			}
			return ""
		})
	}
	l := churnNewLedger()

	users := make([]string, sz.users)
	rooms := make([]string, sz.rooms)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("churn-room-%d", i)
	}
	members := map[string][]string{}
	tokens := map[string]string{}
	for i := range users {
		users[i] = fmt.Sprintf("churn-user-%d", i)
		tokens[users[i]] = token(t, users[i])
		r := rooms[i%sz.rooms]
		members[r] = append(members[r], users[i])
	}

	stop := make(chan struct{})
	started := make(chan error, sz.users)
	type finish struct {
		last *churnConn
		err  error
	}
	finished := make(chan finish, sz.users)
	for i, u := range users {
		go func() {
			last, err := churnUser(l, gws, i, u, tokens[u], rooms[i%sz.rooms], started, stop)
			finished <- finish{last, err}
		}()
	}
	var startErrs []error
	for range users {
		if err := <-started; err != nil {
			startErrs = append(startErrs, err)
		}
	}
	if len(startErrs) > 0 {
		close(stop)
		t.Fatalf("users did not connect: %v", startErrs)
	}

	senderErrs := make(chan error, sz.senders)
	for j := range sz.senders {
		tok := token(t, fmt.Sprintf("sender%d", j))
		go func() { senderErrs <- churnSender(l, gws[j%len(gws)], j, tok, sz, users, rooms, members) }()
	}
	for range sz.senders {
		if err := <-senderErrs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	var lasts []*churnConn
	for range users {
		f := <-finished
		if f.err != nil {
			t.Errorf("churn: %v", f.err)
		}
		if f.last != nil {
			lasts = append(lasts, f.last)
		}
	}

	// Wait for deliveries still on their way to the last connections.
	pollUntil(5*time.Second, func() string {
		l.mu.Lock()
		defer l.mu.Unlock()
		if missing, _ := l.churnMissingLocked(); len(missing) > 0 {
			return fmt.Sprintf("%d deliveries missing", len(missing))
		}
		return ""
	})
	for _, c := range lasts {
		if err := c.closeHandshake(l); err != nil {
			t.Errorf("final close: %v", err)
		}
	}
	// The gateway's counters of messages it dropped or told as gaps: a
	// loss with all of them at zero is silent.
	counters := map[string]float64{}
	for _, g := range gws {
		m, err := g.metrics()
		if err != nil {
			t.Error(err)
			continue
		}
		for _, k := range []string{"wsgate_dropped_total", "wsgate_backplane_dropped_total", "wsgate_gaps_sent_total", "wsgate_backplane_publish_errors_total"} {
			if v, ok := m[k]; ok {
				counters[g.name+" "+k] = v
			}
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	var acked, errored, expected, delivered, gapCount int
	errCodes := map[string]int{}
	for _, s := range l.order {
		switch {
		case s.acked:
			acked++
			expected += len(s.receivers)
			for _, u := range s.receivers {
				if l.recv[u][s.key] > 0 {
					delivered++
				}
			}
		case s.errCode != "":
			errored++
			errCodes[s.errCode]++
		}
	}
	for _, g := range l.gaps {
		gapCount += len(g)
	}
	// How long the settle rounds made clients wait: dial to auth:ok, and
	// close sent to the gateway's close frame.
	var maxAuth, maxClose time.Duration
	for _, cs := range l.conns {
		for _, c := range cs {
			if c.authAt > 0 {
				maxAuth = max(maxAuth, c.authAt-c.dialAt)
			}
			if c.closeSentAt > 0 && c.endAt > c.closeSentAt {
				maxClose = max(maxClose, c.endAt-c.closeSentAt)
			}
		}
	}
	missing, excused := l.churnMissingLocked()
	checkedOpen, missedByOpen, example := l.churnMissedByOpenLocked()
	t.Logf("churn (%s, %d users, %d rooms, %d senders x %d msg/s for %v, %d loops per gateway): "+
		"sent %d, acked %d, errors %d %v, deliveries expected %d, delivered %d, lost %d, excused by gap %d, "+
		"missed by a connection ready throughout %d of %d, duplicates %d, gaps %d, reconnects %d (longest wait for auth:ok %v, for a close answer %v); gateway counters %v",
		size, sz.users, sz.rooms, sz.senders, sz.rate, sz.duration, sz.loops,
		len(l.order), acked, errored, errCodes, expected, delivered, len(missing), excused,
		missedByOpen, checkedOpen, l.dupes, gapCount, l.reconnect, maxAuth.Round(time.Millisecond), maxClose.Round(time.Millisecond), counters)
	for i, e := range l.errs {
		if i == 10 {
			t.Errorf("... %d more errors", len(l.errs)-10)
			break
		}
		t.Errorf("protocol: %s", e)
	}
	if missedByOpen > 0 {
		t.Errorf("%d deliveries missed by a connection that was ready from before the send until after the ack (%s)", missedByOpen, example)
	}
	if l.dupes > 0 {
		t.Errorf("%d messages arrived twice on one connection", l.dupes)
	}
	if len(missing) > 0 {
		t.Errorf("%d acked deliveries lost (none excused by a gap)", len(missing))
		for i, mk := range missing {
			if i == 10 {
				break
			}
			u, key, _ := strings.Cut(mk, "\x00")
			t.Logf("lost: %s", l.describeLocked(l.sent[key], u))
		}
	}
}

// describeLocked tells the story of message s and receiver u: when it was
// sent and acked, and u's connections around that time.
func (l *churnLedger) describeLocked(s *churnSent, u string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s to %s via %s, receiver %s: sent %v, answered %v (ack delivered=%d)",
		s.key, s.kind, s.target, s.sender, u, s.sentAt.Round(time.Microsecond), s.ackAt.Round(time.Microsecond), s.delivered)
	conns := append([]*churnConn(nil), l.conns[u]...)
	sort.Slice(conns, func(i, j int) bool { return conns[i].dialAt < conns[j].dialAt })
	for _, c := range conns {
		end := c.endAt
		if end == 0 {
			end = time.Hour
		}
		if end < s.sentAt-15*time.Millisecond || c.dialAt > s.ackAt+15*time.Millisecond {
			continue
		}
		fmt.Fprintf(&b, "\n    conn %s on %s (%s): dial %v auth %v joined %v close-sent %v end %v code %d",
			c.conn, c.gateway, c.instance, c.dialAt.Round(time.Microsecond), c.authAt.Round(time.Microsecond), c.joinedAt.Round(time.Microsecond),
			c.closeSentAt.Round(time.Microsecond), c.endAt.Round(time.Microsecond), c.closeCode)
	}
	return b.String()
}
