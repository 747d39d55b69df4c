package natsbp

// # History mode (PROTOCOL.md section 6; the router's side is router/history.go)
//
// One JetStream stream (HistoryOptions.Stream, default WSGATE_HISTORY)
// captures <p>.room.> with MaxMsgsPerSubject (-history-max-msgs: per room)
// and MaxAge (-history-ttl), file storage by default (the embedded server
// keeps it under StoreDir, so it survives a restart), AllowDirect, and
// RePublish <p>.room.> -> <p>.live.room.>: after storing a message the
// stream leader publishes it again on the live subject, with headers
// Nats-Sequence (its stream sequence: the `seq` every receiver sees) and
// Nats-Last-Sequence (the previous sequence of the same room).
//
//   - Publish (PublishStored): the history publisher goroutine does a
//     JetStream async publish to <p>.room.<room> (Nats-Msg-Id = the gateway
//     message id, so a retry is not stored twice); the ack goroutine waits
//     for the acks in publish order and calls the router back (`ack` or
//     `error unavailable` to the client). Services may publish on
//     <p>.room.<room> with core NATS as before: the stream keeps and numbers
//     their messages as well (their id becomes "seq-<seq>", the same on every
//     instance and in replays, and ts the store's timestamp).
//   - Live delivery: for a room with local members an instance subscribes to
//     <p>.live.room.<room> (instead of <p>.room.<room>); every instance,
//     the publishing one included, gets every stored message of its rooms
//     from the one stream, in sequence order. The receiver goroutine checks
//     Nats-Last-Sequence against the last sequence it delivered on that
//     subscription: a repeat is dropped, and a gap (a republish lost while
//     NATS was disconnected or slow) is filled from the stream before the
//     new message. The fill runs on one of GapFillWorkers goroutines (a
//     direct get bounded by GapFillTimeout, default 2s), never on the
//     receiver, so other rooms go on being delivered meanwhile; after a
//     reconnect every room may gap at once and the fills queue (GapFillQueue;
//     full: that gap is told, not filled). While a room's fill runs, its
//     later live messages are parked (at most GapParkBytes in all; past it
//     they are dropped and fetched by the next fill, which their successor
//     reveals) and the fill worker delivers them after the filled ones, so
//     a room's order holds. A fill that fails is counted and told to the
//     room's members as `gap {reason: overload}` (at least one message;
//     `resume` recovers what the stream still keeps). Delivery is thus in
//     order and without gaps per room and instance while the stream keeps
//     the messages, at most once otherwise. Core NATS carries user, channel
//     and broadcast messages as without history.
//   - Replay: ReplayWorkers goroutines take resume requests from a bounded
//     queue (full: `unavailable`). A request first waits until every
//     subscription change requested before it is on the wire (so a client
//     that joins and then resumes has its live subscription in place before
//     the replay reads the stream: no window in between), then reads the
//     room's messages after since with batched direct gets ($JS.API.DIRECT.
//     GET.<stream>, next_by_subj, ReplayBatch a request), hands them to the
//     router in pages, and decides recovered: true when the message `since`
//     of that room is still in the stream (checked after the reads: JetStream
//     deletes a room's messages oldest first, so nothing after it was deleted),
//     or when the stream never deleted anything (FirstSeq <= 1, NumDeleted 0)
//     and since <= its last sequence; false otherwise, and then the replay is
//     what is still kept after since. A replay reads at most MaxMsgs +
//     ReplayBatch messages (what a room can keep, plus what arrives
//     meanwhile, which live delivery covers anyway).
//   - Failure: NATS down: PublishStored and Replay fail at once
//     (`unavailable`); a store that does not ack within StoreTimeout
//     (default 5s) answers `unavailable` to the sender; a replay that fails
//     midway answers `unavailable` after the pages already written, and the
//     client resumes again (duplicates are dropped by seq). Start fails when
//     the stream cannot be created (JetStream off on the server).
//
// Limits: a clustered deployment needs the stream's Replicas (the embedded
// cluster) and a mixed cluster of instances with and without history is not
// supported. In a cluster, interest for a newly subscribed live subject
// reaches the stream leader's server asynchronously; the replay covers
// the messages stored meanwhile only if the client resumes after joining.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsgate/wsgate/router"
)

// HistoryOptions configures history mode. Zero values mean the defaults.
type HistoryOptions struct {
	// Enabled turns history mode on (-history); the router needs
	// router.Options.History as well.
	Enabled bool
	// Stream is the JetStream stream's name (default "WSGATE_HISTORY").
	Stream string
	// MaxMsgs is how many messages a room keeps (-history-max-msgs, default 100).
	MaxMsgs int64
	// MaxAge is how long messages are kept (-history-ttl, default 24h;
	// negative: no age limit).
	MaxAge time.Duration
	// Replicas of the stream (default 1; 3 on a three-server cluster).
	Replicas int
	// Memory keeps the stream in memory instead of files (tests).
	Memory bool
	// ReplayWorkers bounds concurrent replays (default 4); ReplayQueue
	// bounds waiting ones (default 4096, full: unavailable).
	ReplayWorkers int
	ReplayQueue   int
	// ReplayBatch is the messages per direct-get request (default 256).
	ReplayBatch int
	// StoreTimeout bounds the wait for a store's ack (default 5s).
	StoreTimeout time.Duration
	// GapFillWorkers bounds concurrent gap fills (default 4); GapFillQueue
	// bounds waiting ones (default 1024); GapFillTimeout bounds one fill's
	// reads (default 2s).
	GapFillWorkers int
	GapFillQueue   int
	GapFillTimeout time.Duration
	// GapParkBytes bounds the live messages held back, over all rooms,
	// while their room's gap is filled (default 16 MiB).
	GapParkBytes int
}

// Defaults of HistoryOptions.
const (
	DefaultHistoryStream  = "WSGATE_HISTORY"
	DefaultHistoryMaxMsgs = 100
	DefaultHistoryMaxAge  = 24 * time.Hour
	DefaultGapFillWorkers = 4
	DefaultGapFillTimeout = 2 * time.Second
	DefaultGapParkBytes   = 16 << 20
)

func (o *HistoryOptions) normalize() {
	if o.Stream == "" {
		o.Stream = DefaultHistoryStream
	}
	if o.MaxMsgs <= 0 {
		o.MaxMsgs = DefaultHistoryMaxMsgs
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultHistoryMaxAge
	} else if o.MaxAge < 0 {
		o.MaxAge = 0 // JetStream: unlimited
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.ReplayWorkers <= 0 {
		o.ReplayWorkers = 4
	}
	if o.ReplayQueue <= 0 {
		o.ReplayQueue = 4096
	}
	if o.ReplayBatch <= 0 {
		o.ReplayBatch = 256
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 5 * time.Second
	}
	if o.GapFillWorkers <= 0 {
		o.GapFillWorkers = DefaultGapFillWorkers
	}
	if o.GapFillQueue <= 0 {
		o.GapFillQueue = 1024
	}
	if o.GapFillTimeout <= 0 {
		o.GapFillTimeout = DefaultGapFillTimeout
	}
	if o.GapParkBytes <= 0 {
		o.GapParkBytes = DefaultGapParkBytes
	}
}

// HistoryStats are history mode's counters.
type HistoryStats struct {
	Stored, StoreErrors, Replays, ReplayErrors, Replayed, Gaps, GapFillErrors, Duplicates uint64
	// GapParkDrops counts live messages not parked during their room's
	// fill (GapParkBytes spent); the next fill of the room fetches them.
	GapParkDrops uint64
}

type history struct {
	b          *Backplane
	o          HistoryOptions
	js         jetstream.JetStream
	stream     jetstream.Stream
	roomPrefix string // <p>.room.
	livePrefix string // <p>.live.room.
	directGet  string // $JS.API.DIRECT.GET.<stream>

	pubq    chan histPub
	ackq    chan histAck
	replayq chan *replayReq

	// Delivery state per live subscription (a new subscription starts
	// afresh), under liveMu: the receiver goroutine delivers a room's
	// messages, except while a fill worker owns the room (liveSub.filling).
	liveMu  sync.Mutex
	live    map[*nats.Subscription]*liveSub
	sweepAt int
	fillq   chan *liveSub
	parked  atomic.Int64 // bytes parked over all rooms
	// fillHook, when set (tests only), runs on the fill worker before each
	// fill's reads: a stand-in for a slow stream.
	fillHook atomic.Pointer[func(room string)]

	stored, storeErrors, replays, replayErrors, replayed, gaps, gapFillErrors, duplicates, parkDrops atomic.Uint64
}

// liveSub is one live subscription's delivery state, under history.liveMu.
type liveSub struct {
	room    string
	last    uint64 // highest seq delivered
	filling bool   // a fill worker owns delivery: new messages are parked
	parked  []liveMsg
	next    liveMsg // the message that revealed the gap (fill worker)
}

// liveMsg is a decoded live message and the previous seq of its room.
type liveMsg struct {
	rm      *router.Remote
	lastSeq uint64 // Nats-Last-Sequence
	size    int64
}

type histPub struct {
	msg  *nats.Msg
	done func(uint64, error)
}

type histAck struct {
	fut  jetstream.PubAckFuture
	done func(uint64, error)
}

type replayReq struct {
	room  string
	since uint64
	page  func([]*router.Remote)
	done  func(bool, error)
}

var _ router.History = (*Backplane)(nil)

// HistoryOn reports whether history mode is configured.
func (b *Backplane) HistoryOn() bool { return b.opts.History.Enabled }

// HistoryStats returns the history counters (zeros when history is off).
func (b *Backplane) HistoryStats() HistoryStats {
	h := b.hist
	if h == nil {
		return HistoryStats{}
	}
	return HistoryStats{Stored: h.stored.Load(), StoreErrors: h.storeErrors.Load(), Replays: h.replays.Load(),
		ReplayErrors: h.replayErrors.Load(), Replayed: h.replayed.Load(), Gaps: h.gaps.Load(),
		GapFillErrors: h.gapFillErrors.Load(), Duplicates: h.duplicates.Load(), GapParkDrops: h.parkDrops.Load()}
}

// interestSubject is the subject an instance subscribes to for an address.
func (b *Backplane) interestSubject(kind router.Kind, name string) string {
	if kind == router.KindRoom && b.opts.History.Enabled {
		return b.opts.Prefix + ".live.room." + name
	}
	return b.Subject(kind, name)
}

// interestAddr is the address of an interest subject (interestSubject's
// inverse).
func (b *Backplane) interestAddr(subject string) (addr, bool) {
	if b.opts.History.Enabled {
		if name, ok := strings.CutPrefix(subject, b.opts.Prefix+".live.room."); ok {
			return addr{kind: router.KindRoom, name: name}, true
		}
	}
	kind, name, ok := b.address(subject)
	return addr{kind: kind, name: name}, ok
}

// interestBarrier returns a channel closed once every Interest call made
// before it has been applied (its SUB written to the connection).
func (b *Backplane) interestBarrier() <-chan struct{} {
	c := make(chan struct{})
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(c)
		return c
	}
	b.barriers = append(b.barriers, c)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return c
}

// createStream creates or updates the stream within 10s, in attempts of
// 2s: when gateways of one cluster start together, all but one of their
// concurrent creates of a replicated stream go unanswered by nats-server
// v2.15, and a retry finds the stream created (seen with 3 embedded
// servers and 3 replicas: every create timed out without the retry).
func createStream(js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(2*time.Second, time.Until(deadline)))
		st, err := js.CreateOrUpdateStream(ctx, cfg)
		cancel()
		if err == nil || time.Until(deadline) <= 0 {
			return st, err
		}
		// A quick refusal (no peers placed yet): a short backoff, not a spin.
		time.Sleep(min(100*time.Millisecond, max(0, time.Until(deadline))))
	}
}

// startHistory creates (or updates) the stream and starts the history
// goroutines; nothing when history is off.
func (b *Backplane) startHistory() error {
	if !b.opts.History.Enabled {
		return nil
	}
	o := b.opts.History
	o.normalize()
	js, err := jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(o.StoreTimeout))
	if err != nil {
		return fmt.Errorf("natsbp: jetstream: %w", err)
	}
	p := b.opts.Prefix
	cfg := jetstream.StreamConfig{
		Name:              o.Stream,
		Description:       "wsgate room history",
		Subjects:          []string{p + ".room.>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: o.MaxMsgs,
		MaxAge:            o.MaxAge,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		AllowDirect:       true,
		Duplicates:        2 * time.Minute,
		RePublish:         &jetstream.RePublish{Source: p + ".room.>", Destination: p + ".live.room.>"},
	}
	if o.Memory {
		cfg.Storage = jetstream.MemoryStorage
	}
	if o.MaxAge > 0 && o.MaxAge < cfg.Duplicates {
		cfg.Duplicates = o.MaxAge
	}
	st, err := createStream(js, cfg)
	if err != nil {
		return fmt.Errorf("natsbp: history stream %s (is JetStream on?): %w", o.Stream, err)
	}
	h := &history{
		b: b, o: o, js: js, stream: st,
		roomPrefix: p + ".room.", livePrefix: p + ".live.room.",
		directGet: "$JS.API.DIRECT.GET." + o.Stream,
		pubq:      make(chan histPub, b.opts.PublishQueue),
		ackq:      make(chan histAck, 4096),
		replayq:   make(chan *replayReq, o.ReplayQueue),
		live:      map[*nats.Subscription]*liveSub{},
		sweepAt:   1024,
		fillq:     make(chan *liveSub, o.GapFillQueue),
	}
	b.hist = h
	b.wg.Add(2 + o.ReplayWorkers + o.GapFillWorkers)
	go h.publisher()
	go h.acker()
	for range o.ReplayWorkers {
		go h.replayWorker()
	}
	for range o.GapFillWorkers {
		go h.fillWorker()
	}
	return nil
}

// PublishStored queues a room message for the store (router.History).
func (b *Backplane) PublishStored(m *router.Remote, done func(uint64, error)) error {
	h := b.hist
	if h == nil || !b.Ready() {
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
	// The message stays queued in nats.go until JetStream acks it: a
	// payload of its own (codec.go; conn added).
	payload := appendMessage(make([]byte, 0, 128+len(m.Data)+len(m.Filter)), m, m.OriginConn)
	msg := &nats.Msg{Subject: h.roomPrefix + m.Name, Data: payload}
	if m.ID != "" {
		msg.Header = nats.Header{jetstream.MsgIDHeader: []string{m.ID}}
	}
	select {
	case h.pubq <- histPub{msg: msg, done: done}:
		return nil
	default:
		b.publishErrors.Add(1)
		return router.ErrUnavailable
	}
}

func (h *history) publisher() {
	defer h.b.wg.Done()
	for {
		select {
		case <-h.b.done:
			return
		case p := <-h.pubq:
			fut, err := h.js.PublishMsgAsync(p.msg)
			if err != nil {
				h.storeErrors.Add(1)
				h.b.publishErrors.Add(1)
				p.done(0, err)
				continue
			}
			select {
			case h.ackq <- histAck{fut: fut, done: p.done}:
			case <-h.b.done:
				return
			}
		}
	}
}

// acker waits for the acks in publish order and reports them.
func (h *history) acker() {
	defer h.b.wg.Done()
	for {
		select {
		case <-h.b.done:
			return
		case a := <-h.ackq:
			select {
			case pa := <-a.fut.Ok():
				h.stored.Add(1)
				h.b.published.Add(1)
				a.done(pa.Sequence, nil)
			case err := <-a.fut.Err():
				h.storeErrors.Add(1)
				h.b.publishErrors.Add(1)
				a.done(0, err)
			case <-h.b.done:
				return
			}
		}
	}
}

// Replay queues a resume's read of the stream (router.History).
func (b *Backplane) Replay(room string, since uint64, page func([]*router.Remote), done func(bool, error)) error {
	h := b.hist
	if h == nil || !b.Ready() {
		return router.ErrUnavailable
	}
	select {
	case h.replayq <- &replayReq{room: room, since: since, page: page, done: done}:
		return nil
	default:
		return router.ErrUnavailable
	}
}

func (h *history) replayWorker() {
	defer h.b.wg.Done()
	for {
		select {
		case <-h.b.done:
			return
		case q := <-h.replayq:
			recovered, err := h.replay(q)
			h.replays.Add(1)
			if err != nil {
				h.replayErrors.Add(1)
			}
			q.done(recovered, err)
		}
	}
}

func (h *history) replay(q *replayReq) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-h.b.interestBarrier():
	case <-ctx.Done():
		return false, ctx.Err()
	case <-h.b.done:
		return false, router.ErrUnavailable
	}
	subj := h.roomPrefix + q.room
	limit := int(h.o.MaxMsgs) + h.o.ReplayBatch
	var page []*router.Remote
	n := 0
	err := h.fetch(ctx, subj, q.since+1, func(m *nats.Msg, seq uint64) bool {
		rm, err := h.toRemote(q.room, m.Header, m.Data, seq)
		if err != nil {
			h.b.decodeErrors.Add(1)
			return true
		}
		page = append(page, rm)
		n++
		if len(page) == h.o.ReplayBatch {
			q.page(page)
			page = nil
		}
		return n < limit
	})
	if len(page) > 0 {
		q.page(page)
	}
	h.replayed.Add(uint64(n))
	if err != nil {
		return false, err
	}
	return h.recovered(ctx, subj, q.since)
}

// recovered reports whether no message of subj after since was deleted.
func (h *history) recovered(ctx context.Context, subj string, since uint64) (bool, error) {
	if since > 0 {
		m, err := h.stream.GetMsg(ctx, since, jetstream.WithGetMsgSubject(subj))
		switch {
		case err == nil && m.Sequence == since:
			return true, nil
		case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
			return false, err
		}
	}
	info, err := h.stream.Info(ctx)
	if err != nil {
		return false, err
	}
	s := info.State
	return s.FirstSeq <= 1 && s.NumDeleted == 0 && since <= s.LastSeq, nil
}

// directRequest is a JetStream direct get (batched).
type directRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// fetch calls fn with the kept messages of subj from sequence from on, in
// order, until fn returns false or none are left.
func (h *history) fetch(ctx context.Context, subj string, from uint64, fn func(m *nats.Msg, seq uint64) bool) error {
	nc := h.b.nc
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("natsbp: history fetch: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		req, _ := json.Marshal(directRequest{Seq: from, NextFor: subj, Batch: h.o.ReplayBatch})
		if err := nc.PublishRequest(h.directGet, inbox, req); err != nil {
			return fmt.Errorf("natsbp: history fetch: %w", err)
		}
		got := 0
	batch:
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return fmt.Errorf("natsbp: history fetch: %w", err)
			}
			switch status := m.Header.Get("Status"); status {
			case "":
			case "404":
				return nil // nothing (more) at or after from
			case "204": // end of batch
				np, _ := strconv.ParseUint(m.Header.Get(numPendingHeader), 10, 64)
				if np == 0 || got == 0 {
					return nil
				}
				break batch
			default:
				return fmt.Errorf("natsbp: history fetch: status %s %s", status, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return fmt.Errorf("natsbp: history fetch: bad %s header", jetstream.SequenceHeader)
			}
			got++
			from = seq + 1
			if !fn(m, seq) {
				return nil
			}
		}
	}
}

// toRemote decodes a stored message of room.
func (h *history) toRemote(room string, hdr nats.Header, data []byte, seq uint64) (*router.Remote, error) {
	var w message
	if err := decodeMessage(data, &w, true); err != nil {
		return nil, fmt.Errorf("natsbp: stored payload of %s: %w", room, err)
	}
	pri, err := parsePriority(w.priority)
	if err != nil {
		return nil, fmt.Errorf("natsbp: stored payload of %s: %w %q", room, err, w.priority)
	}
	// Kept past delivery (parked, replay pages): a Remote of its own, its
	// strings aliasing data, which nothing writes again.
	rm := &router.Remote{Kind: router.KindRoom, Name: room, Data: w.data, From: bstr(w.from), Filter: w.filter, ID: bstr(w.id),
		TS: w.ts, Priority: pri, Origin: bstr(w.origin), OriginConn: w.conn, Seq: seq}
	if len(rm.Data) == 0 { // data was validated as ValidJSON would (decodeMessage)
		rm.Data = nullJSON
	}
	if rm.ID == "" {
		rm.ID = "seq-" + strconv.FormatUint(seq, 10)
	}
	if rm.TS == 0 {
		if t, err := time.Parse(time.RFC3339Nano, hdr.Get(jetstream.TimeStampHeaer)); err == nil {
			rm.TS = t.UnixMilli()
		}
	}
	return rm, nil
}

func (h *history) isLive(subject string) bool { return strings.HasPrefix(subject, h.livePrefix) }

// receive delivers a republished message (receiver goroutine), dropping a
// repeat, and hands the room to a fill worker when the message reveals a
// gap before it, or parks it when the room's fill is running.
func (h *history) receive(msg *nats.Msg) {
	b := h.b
	room := msg.Subject[len(h.livePrefix):]
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		b.decodeErrors.Add(1)
		return
	}
	rm, err := h.toRemote(room, msg.Header, msg.Data, seq)
	if err != nil {
		b.decodeErrors.Add(1)
		return
	}
	b.received.Add(1)
	ls, _ := strconv.ParseUint(msg.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	lm := liveMsg{rm: rm, lastSeq: ls, size: int64(len(msg.Data)) + pendingOverhead}
	h.liveMu.Lock()
	st := h.live[msg.Sub]
	if st == nil {
		st = &liveSub{room: room}
		h.live[msg.Sub] = st
		h.sweepLocked()
	}
	switch {
	case st.filling:
		if h.parked.Load()+lm.size > int64(h.o.GapParkBytes) {
			h.parkDrops.Add(1) // its successor reveals it; the next fill fetches it
		} else {
			h.parked.Add(lm.size)
			st.parked = append(st.parked, lm)
		}
		h.liveMu.Unlock()
		return
	case st.last != 0 && seq <= st.last:
		h.liveMu.Unlock()
		h.duplicates.Add(1)
		return
	case st.last != 0 && ls > st.last:
		select {
		case h.fillq <- st:
			st.filling, st.next = true, lm
			h.liveMu.Unlock()
			return
		default: // too many rooms gapped at once: tell, do not fill
			prev := st.last
			st.last = seq
			h.liveMu.Unlock()
			h.gaps.Add(1)
			h.fillFailed(room, prev, seq, errors.New("gap fill queue full"))
			b.deliver(rm)
			return
		}
	}
	st.last = seq
	h.liveMu.Unlock()
	b.deliver(rm)
}

// sweepLocked forgets the state of ended subscriptions (liveMu held).
func (h *history) sweepLocked() {
	if len(h.live) <= h.sweepAt {
		return
	}
	for s, st := range h.live {
		if !s.IsValid() && !st.filling {
			delete(h.live, s)
		}
	}
	h.sweepAt = max(1024, 2*len(h.live))
}

// fillWorker runs gap fills. While it owns a room (filling), it delivers
// the filled messages, the one that revealed the gap, then what was parked
// meanwhile, each checked for repeats and gaps in turn, and only then
// gives the room back to the receiver.
func (h *history) fillWorker() {
	defer h.b.wg.Done()
	for {
		select {
		case <-h.b.done:
			return
		case st := <-h.fillq:
			h.runFill(st)
		}
	}
}

func (h *history) runFill(st *liveSub) {
	h.liveMu.Lock()
	last, next := st.last, st.next
	st.next = liveMsg{}
	h.liveMu.Unlock()
	for {
		seq := next.rm.Seq
		switch {
		case seq <= last:
			h.duplicates.Add(1)
		default:
			if next.lastSeq > last {
				h.gaps.Add(1)
				h.fillGap(st.room, last, seq)
			}
			h.b.deliver(next.rm)
			last = seq
		}
		h.liveMu.Lock()
		if len(st.parked) == 0 {
			st.last, st.filling, st.parked = last, false, nil
			h.liveMu.Unlock()
			return
		}
		next = st.parked[0]
		st.parked[0] = liveMsg{}
		st.parked = st.parked[1:]
		h.parked.Add(-next.size)
		h.liveMu.Unlock()
	}
}

// numPendingHeader is in a batched direct get's end of batch: the messages
// left after it.
const numPendingHeader = "Nats-Num-Pending"

// fillGap delivers the kept messages of room after prev and before upto
// (fill worker).
func (h *history) fillGap(room string, prev, upto uint64) {
	if hook := h.fillHook.Load(); hook != nil {
		(*hook)(room)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.o.GapFillTimeout)
	defer cancel()
	go func() { // Close cancels a fill in progress
		select {
		case <-h.b.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := h.fetch(ctx, h.roomPrefix+room, prev+1, func(m *nats.Msg, seq uint64) bool {
		if seq >= upto {
			return false
		}
		rm, err := h.toRemote(room, m.Header, m.Data, seq)
		if err != nil {
			h.b.decodeErrors.Add(1)
			return true
		}
		h.b.deliver(rm)
		return true
	})
	if err != nil {
		h.fillFailed(room, prev, upto, err)
	}
}

// fillFailed counts a gap that was not (fully) filled and tells the room's
// members: at least one message is missing; `resume` recovers what the
// stream keeps.
func (h *history) fillFailed(room string, prev, upto uint64, err error) {
	h.gapFillErrors.Add(1)
	h.b.opts.Logger.Warn("history gap not filled", "room", room, "after", prev, "before", upto, "err", err)
	h.b.deliver(&router.Remote{Kind: router.KindRoom, Name: room, Dropped: 1})
}
