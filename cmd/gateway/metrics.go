package main

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
	"github.com/wsgate/wsgate/router/natsbp"
)

// statsTimeout bounds how long a scrape waits for the loops to copy their
// counters; a loop that does not answer in time is reported as a scrape error.
const statsTimeout = time.Second

// gatewayCollector folds the per-loop counters (engine.LoopStats,
// router.ShardSnapshot) and the backplane's counters at scrape time. The hot
// path only increments plain loop-owned fields; nothing here runs per message.
type gatewayCollector struct {
	eng   *engine.Engine
	rt    *router.Router    // nil in echo and broadcast modes
	bp    *natsbp.Backplane // nil without a NATS backplane
	lag   *lagMonitor       // may be nil
	drain func() bool       // whether the gateway is draining
	log   *slog.Logger

	connections, upgrades, refused, closes, closesReceived, handshakeTimeouts,
	pingsSent, messagesIn, bytesIn, bytesOut, slowConsumers,
	routed, deliveries, held, gaps, dropped, rateKicks, authFailures, refreshes, tokensExpired, bpRouterErrors,
	maxQueued, latency,
	bpPublished, bpPublishErrors, bpReceived, bpDecodeErrors, bpDropped, bpReconnects,
	bpDisconnects, bpSubscriptions, bpConnected,
	shed, acceptErrors, overloadGaps,
	histStored, histStoreErrors, histReplays, histReplayErrors, histReplayed,
	histGapFills, histGapFillErrors, histDuplicates, histGapParkDrops,
	rpcRequests, rpcLatency, rpcInFlight, rpcLate,
	lagLast, lagMax, draining, loops *prometheus.Desc
	events, hooks                                                                       *prometheus.Desc // lifecycle events and hooks (router/events.go, router/hooks.go)
	presRooms, presPairs, presMessages, presDropped, presResyncs, presLost, presQueries *prometheus.Desc // router/presence.go
}

func newGatewayCollector(eng *engine.Engine, rt *router.Router, bp *natsbp.Backplane, lag *lagMonitor, drain func() bool, log *slog.Logger) *gatewayCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("wsgate_"+name, help, labels, nil)
	}
	c := &gatewayCollector{
		eng: eng, rt: rt, bp: bp, lag: lag, drain: drain, log: log,

		connections:       d("connections", "Open connections by lifecycle state and event loop.", "state", "loop"),
		upgrades:          d("upgrades_total", "WebSocket upgrades accepted."),
		refused:           d("upgrades_refused_total", "Upgrade requests refused, by HTTP status (other = any status not listed).", "status"),
		closes:            d("closes_total", "Close frames sent by the gateway, by close code (other = any code not listed).", "code"),
		closesReceived:    d("closes_received_total", "Close frames received from clients."),
		handshakeTimeouts: d("handshake_timeouts_total", "Connections closed because the upgrade request did not arrive within -handshake-timeout."),
		pingsSent:         d("pings_sent_total", "Ping frames sent by the gateway."),
		messagesIn:        d("messages_in_total", "Text and binary messages received from clients."),
		bytesIn:           d("bytes_in_total", "Bytes read from client connections (upgrade requests and frames)."),
		bytesOut:          d("bytes_out_total", "Bytes handed to the kernel for client connections."),
		slowConsumers:     d("slow_consumers_total", "Connections closed with 4009 because their outbound queue passed -max-queue-bytes."),

		routed:         d("messages_routed_total", "Room, user, channel and broadcast messages fanned out, counted once per event loop that had receivers."),
		deliveries:     d("deliveries_total", "Message frames queued to receiving connections."),
		held:           d("held_total", "Normal-priority deliveries held back while the receiver was backed up."),
		gaps:           d("gaps_sent_total", "gap messages sent after low-priority or inbox_full drops."),
		dropped:        d("dropped_total", "Messages dropped, by reason: rate_limit (inbound over -rate-msgs/-rate-bytes), low_priority (outbound, receiver backed up), slow_consumer (connections closed with 4009), inbox_full (refused by a full event-loop inbox, -loop-inbox-bytes, once per loop; told with gap), undeliverable (no form in the receiver's codec).", "reason"),
		rateKicks:      d("rate_kicks_total", "Connections closed with 1008 after -rate-kick-after rate-limited messages in a row."),
		authFailures:   d("auth_failures_total", "Tokens refused (upgrade 401 or auth:fail)."),
		refreshes:      d("token_refreshes_total", "refresh messages by result: ok (claims replaced), forbidden (token for another user), invalid (token did not verify).", "result"),
		tokensExpired:  d("tokens_expired_total", "token_expired messages sent (a connection's token reached its exp); those not refreshed within -token-grace are closed with 4011 (closes_total{code=\"4011\"})."),
		bpRouterErrors: d("backplane_publish_refused_total", "Client messages refused with error unavailable because the backplane did not take them."),
		maxQueued:      d("max_queued_bytes", "Largest outbound queue any accepted delivery produced on the loop.", "loop"),
		latency:        d("delivery_latency_seconds", "Time from the gateway taking a message in to queuing its frame on a receiver, sampled (one delivery in "+strconv.Itoa(router.LatencySampleEvery)+" per loop)."),

		bpPublished:     d("backplane_published_total", "Messages published to NATS."),
		bpPublishErrors: d("backplane_publish_errors_total", "NATS publish failures."),
		bpReceived:      d("backplane_received_total", "Messages received from NATS."),
		bpDecodeErrors:  d("backplane_decode_errors_total", "Messages from NATS that could not be decoded."),
		bpDropped:       d("backplane_dropped_total", "Messages from NATS dropped because the receiver fell behind."),
		bpReconnects:    d("backplane_reconnects_total", "NATS reconnects."),
		bpDisconnects:   d("backplane_disconnects_total", "NATS disconnects."),
		bpSubscriptions: d("backplane_subscriptions", "NATS subscriptions held (router interest)."),
		bpConnected:     d("backplane_connected", "1 while the NATS connection is up."),

		shed:         d("connections_shed_total", "TCP connections refused before the upgrade (a short 503, then closed), by reason: max_conns (-max-conns open), descriptors (near the open-file limit, or accept hit EMFILE/ENFILE).", "reason"),
		acceptErrors: d("accept_errors_total", "accept() failures; each is followed by shedding or a short backoff, never by an exit."),
		overloadGaps: d("overload_gaps_total", "gap messages with reason overload (a loop's inbox refused data for the client; also in gaps_sent_total)."),

		histStored:        d("history_stored_total", "Messages stored in the JetStream history (-history)."),
		histStoreErrors:   d("history_store_errors_total", "Messages the history failed to store (their senders got error unavailable)."),
		histReplays:       d("history_replays_total", "resume requests served from the history."),
		histReplayErrors:  d("history_replay_errors_total", "resume requests the history could not serve."),
		histReplayed:      d("history_replayed_total", "Messages sent to clients by resume."),
		histGapFills:      d("history_gap_fills_total", "Gaps in a room's live stream (a sequence skipped) found by the receiver and filled from the history."),
		histGapFillErrors: d("history_gap_fill_errors_total", "Gap fills that failed or were refused (queue full); the members got a gap message."),
		histDuplicates:    d("history_duplicates_total", "Live messages dropped as repeats of a sequence already delivered."),
		histGapParkDrops:  d("history_gap_park_drops_total", "Live messages not parked while their room was being filled (-history-park-bytes spent); the next fill fetches them."),

		rpcRequests: d("rpc_requests_total", "Client rpc requests by outcome: ok, service_error, timeout, unavailable, forbidden, rate_limited, bad_reply (the reply was not JSON or over -max-message-size).", "outcome"),
		rpcLatency:  d("rpc_latency_seconds", "Time from a client's rpc to the service's answer (rpc:result or service_error), every request."),
		rpcInFlight: d("rpc_inflight", "rpc requests waiting for a service's answer."),
		rpcLate:     d("rpc_late_replies_total", "Service replies that came after their rpc timed out or its connection closed (dropped)."),

		lagLast:  d("loop_lag_seconds", "Event-loop lag: time from posting a probe task to the loop until it ran, last probe (once a second).", "loop"),
		lagMax:   d("loop_lag_max_seconds", "Largest event-loop lag over the last minute.", "loop"),
		draining: d("draining", "1 while the gateway drains after SIGTERM/SIGINT."),
		loops:    d("loops", "Event loops configured."),

		events:       d("events_total", "Lifecycle events (-events) by result: published (handed to NATS) or dropped (queue full, -event-queue-bytes, or NATS refused them).", "result"),
		presRooms:    d("presence_rooms", "Rooms whose presence this instance tracks (those with local members)."),
		presPairs:    d("presence_pairs", "Tracked (room, user) pairs across instances, for the rooms tracked here."),
		presMessages: d("presence_messages_total", "Presence deltas and state transfers exchanged with other instances, by direction (sent, received).", "direction"),
		presDropped:  d("presence_dropped_total", "Presence work dropped, by reason: inbox_full (the presence goroutine's inbox), ask_rejected (a client presence query refused by it), send_error (NATS refused a delta), dirty_overflow (too many pending changes: every room re-read).", "reason"),
		presResyncs:  d("presence_resyncs_total", "State transfers asked for after a gap, a reconnect or an instance's return."),
		presLost:     d("presence_instances_lost_total", "Instances dropped from presence after -instance-timeout without a heartbeat (their users leave)."),
		presQueries:  d("presence_remote_queries_total", "Presence questions about rooms not tracked here, asked of the instances that track them, by result (ok, failed).", "result"),
		hooks:        d("hooks_total", "Hook answers by hook (connect, join) and outcome: allow, deny, timeout (no answer within -hook-timeout), unavailable (no responder, or the request could not be sent), malformed (treated as deny).", "hook", "outcome"),
	}
	return c
}

// Describe sends every descriptor.
func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.connections, c.upgrades, c.refused, c.closes, c.closesReceived, c.handshakeTimeouts,
		c.pingsSent, c.messagesIn, c.bytesIn, c.bytesOut, c.slowConsumers,
		c.routed, c.deliveries, c.held, c.gaps, c.dropped, c.rateKicks, c.authFailures, c.refreshes, c.tokensExpired, c.bpRouterErrors,
		c.maxQueued, c.latency,
		c.bpPublished, c.bpPublishErrors, c.bpReceived, c.bpDecodeErrors, c.bpDropped, c.bpReconnects,
		c.bpDisconnects, c.bpSubscriptions, c.bpConnected,
		c.shed, c.acceptErrors, c.overloadGaps,
		c.histStored, c.histStoreErrors, c.histReplays, c.histReplayErrors, c.histReplayed,
		c.histGapFills, c.histGapFillErrors, c.histDuplicates, c.histGapParkDrops,
		c.rpcRequests, c.rpcLatency, c.rpcInFlight, c.rpcLate,
		c.lagLast, c.lagMax, c.draining, c.loops, c.events, c.hooks,
		c.presRooms, c.presPairs, c.presMessages, c.presDropped, c.presResyncs, c.presLost, c.presQueries,
	} {
		ch <- d
	}
}

// Collect copies the counters on each loop (one Post per loop and source)
// and folds them.
func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(c.loops, float64(len(c.eng.Loops())))
	gauge(c.draining, b2f(c.drain != nil && c.drain()))

	as := c.eng.AcceptStats()
	counter(c.shed, as.ShedMaxConns, "max_conns")
	counter(c.shed, as.ShedDescriptors, "descriptors")
	counter(c.acceptErrors, as.AcceptErrors)

	var slow uint64
	if loops, err := c.eng.Stats(ctx); err != nil {
		c.log.Warn("metrics: engine stats", "err", err)
		ch <- prometheus.NewInvalidMetric(c.connections, err)
	} else {
		var sum engine.LoopStats
		for i := range loops {
			ls := &loops[i]
			loop := strconv.Itoa(i)
			for st := range ls.States {
				if s := engine.State(st); s != engine.StateClosed {
					gauge(c.connections, float64(ls.States[st]), s.String(), loop)
				}
			}
			sum.Add(ls)
		}
		counter(c.upgrades, sum.Upgrades)
		for i, n := range sum.Refusals {
			counter(c.refused, n, refusalLabel(i))
		}
		for i, n := range sum.Closes {
			counter(c.closes, n, closeLabel(i))
		}
		counter(c.closesReceived, sum.ClosesReceived)
		counter(c.handshakeTimeouts, sum.HandshakeTimeouts)
		counter(c.pingsSent, sum.PingsSent)
		counter(c.messagesIn, sum.MessagesIn)
		counter(c.bytesIn, sum.BytesIn)
		counter(c.bytesOut, sum.BytesOut)
		slow = sum.SlowConsumers
	}

	if c.rt != nil {
		ev := c.rt.EventStats()
		counter(c.events, ev.Published, "published")
		counter(c.events, ev.Dropped, "dropped")
		hs := c.rt.HookStats()
		for k := range hs {
			for o := range hs[k] {
				counter(c.hooks, hs[k][o], router.HookKindNames[k], router.HookOutcomeNames[o])
			}
		}
		ps := c.rt.PresenceStats() // atomics: no loop involved
		gauge(c.presRooms, float64(ps.Rooms))
		gauge(c.presPairs, float64(ps.Pairs))
		counter(c.presMessages, ps.Sent, "sent")
		counter(c.presMessages, ps.Received, "received")
		counter(c.presDropped, ps.Dropped, "inbox_full")
		counter(c.presDropped, ps.AskRejected, "ask_rejected")
		counter(c.presDropped, ps.SendErrors, "send_error")
		counter(c.presDropped, ps.DirtyOverflows, "dirty_overflow")
		counter(c.presResyncs, ps.Resyncs)
		counter(c.presLost, ps.InstancesLost)
		counter(c.presQueries, ps.Queries-min(ps.Queries, ps.QueryFailures), "ok")
		counter(c.presQueries, ps.QueryFailures, "failed")
	}
	if c.rt != nil {
		snaps, err := c.rt.Snapshot(ctx)
		if err != nil {
			c.log.Warn("metrics: router stats", "err", err)
			ch <- prometheus.NewInvalidMetric(c.deliveries, err)
		} else {
			var sum router.ShardStats
			var lat router.LatencyHistogram
			for i := range snaps {
				sum.Add(&snaps[i].Stats)
				lat.Add(&snaps[i].Latency)
				gauge(c.maxQueued, float64(snaps[i].Stats.MaxQueued), strconv.Itoa(i))
			}
			counter(c.routed, sum.MessagesRouted)
			counter(c.deliveries, sum.Deliveries)
			counter(c.held, sum.Held)
			counter(c.gaps, sum.GapsSent)
			counter(c.overloadGaps, sum.OverloadGaps)
			counter(c.rateKicks, sum.RateKicks)
			counter(c.authFailures, sum.AuthFailures)
			counter(c.refreshes, sum.RefreshOK, "ok")
			counter(c.refreshes, sum.RefreshForbidden, "forbidden")
			counter(c.refreshes, sum.RefreshInvalid, "invalid")
			counter(c.tokensExpired, sum.TokensExpired)
			counter(c.bpRouterErrors, sum.BackplaneErrors)
			counter(c.dropped, sum.RateLimited, "rate_limit")
			counter(c.dropped, sum.DroppedLow, "low_priority")
			counter(c.dropped, sum.InboxDropped, "inbox_full")
			counter(c.dropped, sum.Undeliverable, "undeliverable")
			slow += sum.SlowConsumers
			buckets := make(map[float64]uint64, len(router.LatencyBuckets))
			var cum uint64
			for i, ub := range router.LatencyBuckets {
				cum += lat.Counts[i]
				buckets[ub] = cum
			}
			ch <- prometheus.MustNewConstHistogram(c.latency, lat.Count, float64(lat.SumNS)/1e9, buckets)
			c.collectRPC(ch, snaps)
		}
	}
	counter(c.slowConsumers, slow)
	counter(c.dropped, slow, "slow_consumer")

	if c.bp != nil {
		s := c.bp.Stats()
		counter(c.bpPublished, s.Published)
		counter(c.bpPublishErrors, s.PublishErrors)
		counter(c.bpReceived, s.Received)
		counter(c.bpDecodeErrors, s.DecodeErrors)
		counter(c.bpDropped, s.Dropped)
		counter(c.bpReconnects, s.Reconnects)
		counter(c.bpDisconnects, s.Disconnects)
		gauge(c.bpSubscriptions, float64(s.Subscriptions))
		gauge(c.bpConnected, b2f(c.bp.Ready()))
		if c.bp.HistoryOn() {
			h := c.bp.HistoryStats()
			counter(c.histStored, h.Stored)
			counter(c.histStoreErrors, h.StoreErrors)
			counter(c.histReplays, h.Replays)
			counter(c.histReplayErrors, h.ReplayErrors)
			counter(c.histReplayed, h.Replayed)
			counter(c.histGapFills, h.Gaps)
			counter(c.histGapFillErrors, h.GapFillErrors)
			counter(c.histDuplicates, h.Duplicates)
			counter(c.histGapParkDrops, h.GapParkDrops)
		}
	}

	if c.lag != nil {
		for i, l := range c.lag.snapshot() {
			loop := strconv.Itoa(i)
			gauge(c.lagLast, l.last.Seconds(), loop)
			gauge(c.lagMax, l.max.Seconds(), loop)
		}
	}
}

func refusalLabel(i int) string {
	if i < len(engine.RefusalStatuses) {
		return strconv.Itoa(engine.RefusalStatuses[i])
	}
	return "other"
}

func closeLabel(i int) string {
	if i < len(engine.CloseCodes) {
		return strconv.Itoa(int(engine.CloseCodes[i]))
	}
	return "other"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newRegistry is the admin port's Prometheus registry: the gateway's own
// collector plus the Go runtime and process collectors.
func newRegistry(gc *gatewayCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(gc, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if gc.rt != nil {
		reg.MustRegister(newControlCollector(gc.rt)) // control.go
	}
	return reg
}

// --- event-loop lag -----------------------------------------------------------

// lagWindow is how many probes loop_lag_max_seconds looks back over.
const lagWindow = 60

// lagMonitor measures each loop's lag: every interval it posts a probe Task
// to each running loop and records the time until it ran. A probe that has
// not run by the next interval is not re-posted; the loop's lag then reads
// as the time since that probe was posted, so a stuck loop shows a growing
// lag instead of none.
type lagMonitor struct {
	eng      *engine.Engine
	interval time.Duration

	mu    sync.Mutex
	loops []loopLag
}

type loopLag struct {
	pending time.Time // when the outstanding probe was posted; zero when none
	last    time.Duration
	ring    [lagWindow]time.Duration
	next    int
}

// lagSample is one loop's lag as reported to metrics.
type lagSample struct{ last, max time.Duration }

func newLagMonitor(eng *engine.Engine, interval time.Duration) *lagMonitor {
	return &lagMonitor{eng: eng, interval: interval, loops: make([]loopLag, len(eng.Loops()))}
}

// run probes until ctx ends.
func (m *lagMonitor) run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.probe()
		}
	}
}

type lagProbe struct {
	m     *lagMonitor
	i     int
	start time.Time
}

func (m *lagMonitor) probe() {
	now := time.Now()
	for i, l := range m.eng.Loops() {
		m.mu.Lock()
		ll := &m.loops[i]
		if !ll.pending.IsZero() {
			ll.last = now.Sub(ll.pending)
			m.mu.Unlock()
			continue
		}
		ll.pending = now
		m.mu.Unlock()
		if !l.Post(engine.Task{Fn: lagTask, Arg: &lagProbe{m: m, i: i, start: now}}) {
			m.mu.Lock()
			ll.pending = time.Time{}
			m.mu.Unlock()
		}
	}
}

// lagTask runs on the probed loop.
func lagTask(_ *engine.Loop, arg any) {
	p := arg.(*lagProbe)
	d := time.Since(p.start)
	p.m.mu.Lock()
	ll := &p.m.loops[p.i]
	ll.pending = time.Time{}
	ll.last = d
	ll.ring[ll.next] = d
	ll.next = (ll.next + 1) % lagWindow
	p.m.mu.Unlock()
}

func (m *lagMonitor) snapshot() []lagSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]lagSample, len(m.loops))
	for i := range m.loops {
		ll := &m.loops[i]
		s := lagSample{last: ll.last, max: ll.last}
		for _, d := range ll.ring {
			s.max = max(s.max, d)
		}
		out[i] = s
	}
	return out
}

// collectRPC sends the rpc metrics, folded over the loops.
func (c *gatewayCollector) collectRPC(ch chan<- prometheus.Metric, snaps []router.ShardSnapshot) {
	var st router.RPCStats
	for i := range snaps {
		st.Add(&snaps[i].RPC)
	}
	for i, name := range router.RPCOutcomeNames {
		ch <- prometheus.MustNewConstMetric(c.rpcRequests, prometheus.CounterValue, float64(st.Outcomes[i]), name)
	}
	ch <- prometheus.MustNewConstMetric(c.rpcInFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(c.rpcLate, prometheus.CounterValue, float64(st.Late))
	buckets := make(map[float64]uint64, len(router.LatencyBuckets))
	var cum uint64
	for i, ub := range router.LatencyBuckets {
		cum += st.Latency.Counts[i]
		buckets[ub] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.rpcLatency, st.Latency.Count, float64(st.Latency.SumNS)/1e9, buckets)
}
