package harness

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/bench/hist"
	"github.com/wsgate/wsgate/bench/loadclient"
	"github.com/wsgate/wsgate/bench/pacer"
	"github.com/wsgate/wsgate/bench/wsproto"
)

// Codec formats the paced, measured messages. It is the extension point for
// scenarios that speak the gateway's JSON protocol (auth/join on Open, a
// JSON publish envelope in Encode, the timestamp pulled out in Decode).
type Codec interface {
	// Open runs on the loop goroutine once a connection is upgraded.
	Open(c *loadclient.Conn)
	// Encode appends the payload of one paced message (about size bytes).
	Encode(dst []byte, intendedNs int64, seq uint64, size int) []byte
	// Decode returns the intended send time and the seq carried by a
	// received payload; ok=false for messages that are not measured payloads.
	Decode(p []byte) (intendedNs int64, seq uint64, ok bool)
}

// Control classes returned by ControlCodec.Control.
const (
	CtlOther  = iota // not ours: counted in Progress.Other
	CtlIgnore        // expected protocol chatter (auth:ok, acks)
	CtlReady         // the connection is ready (e.g. joined): Progress.Ready
	CtlError         // an error reply: Progress.Errors
)

// ControlCodec is an optional Codec extension: it classifies the data
// messages Decode rejected (protocol replies such as joined or error).
type ControlCodec interface {
	Control(c *loadclient.Conn, p []byte) int
}

// ConnEncoder is an optional Codec extension: the payload depends on the
// sending connection (e.g. its own channel); used instead of Encode.
type ConnEncoder interface {
	EncodeFor(c *loadclient.Conn, dst []byte, intendedNs int64, seq uint64, size int) []byte
}

// LineCodec is an optional Codec extension: a frame may carry several
// messages, one per line (Centrifugo's JSON protocol batches replies).
type LineCodec interface {
	LineDelimited() bool
}

// PathCodec is an optional Codec extension: a per-connection request path
// (e.g. /ws?token=<token of user u<id>>). globalID is unique across workers.
type PathCodec interface {
	Path(globalID int, sender bool) string
}

var (
	codecMu sync.Mutex
	codecs  = map[string]func(*WorkerInit) Codec{}
)

// RegisterCodec makes a codec available to workers by name (call from init).
func RegisterCodec(name string, f func(*WorkerInit) Codec) {
	codecMu.Lock()
	defer codecMu.Unlock()
	codecs[name] = f
}

func init() { RegisterCodec("raw", func(*WorkerInit) Codec { return rawCodec{} }) }

// rawCodec: [0:8] intended send time (unix ns, LE) [8:12] "WSB1" [12:20] seq, then filler.
type rawCodec struct{}

// MinRawSize is the smallest raw payload.
const MinRawSize = 20

var rawMagic = [4]byte{'W', 'S', 'B', '1'}

func (rawCodec) Open(*loadclient.Conn) {}
func (rawCodec) Encode(dst []byte, intended int64, seq uint64, size int) []byte {
	if size < MinRawSize {
		size = MinRawSize
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(intended))
	dst = append(dst, rawMagic[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	for i := MinRawSize; i < size; i++ {
		dst = append(dst, 'x')
	}
	return dst
}
func (rawCodec) Decode(p []byte) (int64, uint64, bool) {
	if len(p) < MinRawSize || [4]byte(p[8:12]) != rawMagic {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint64(p)), binary.LittleEndian.Uint64(p[12:20]), true
}

// connection tags
const (
	tagReceiver uint8 = iota
	tagSender
	tagSlow
)

type counters struct {
	dials, failed, closed, sent, sendFailed, recv, recvWindow, sentWindow, other, reopened, connecting atomic.Int64
	ready, slowRecv, errors                                                                            atomic.Int64
	// dups counts measured payloads a connection had already received
	// (same seq); they are not in recv/recvWindow.
	dups atomic.Int64
}

type runState struct {
	p        pacer.Pacer
	i        int64
	senders  []int
	rr       int
	from, to int64
	size     int
	op       byte
	seqBase  uint64
}

type redial struct {
	at   int64
	slot int
}

type wloop struct {
	w       *worker
	idx     int
	l       *loadclient.Loop
	codec   Codec
	conns   []*loadclient.Conn
	seen    []seqSet // by slot: seqs received since the last run command
	tries   []uint8
	scratch []byte
	rng     *rand.Rand

	want, nextSlot, inflight, maxInflight int
	senders                               int // worker-local ids below this send
	slow                                  int // worker-local ids in [senders, senders+slow) stop reading in "run"
	resumeAt                              int64
	paused                                []*loadclient.Conn
	hold, reconnect, connecting           bool
	connectDone                           chan struct{}
	redials                               []redial

	firstDial, lastOpen, markNs, lastReopen int64
	failures                                map[string]int64
	connHist, latHist, lagHist, reopenHist  *hist.Histogram

	run            *runState
	winFrom, winTo int64
	c              counters
}

type worker struct {
	init    WorkerInit
	targets []*loadclient.Target
	nd, ns  int
	loops   []*wloop
	outMu   sync.Mutex
	out     *json.Encoder
}

func (w *worker) emit(ev Event) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(ev)
}

func (w *worker) target(id int, sender bool) *loadclient.Target {
	d := id % w.nd
	if sender && w.init.SenderTarget > 0 && w.init.SenderTarget <= w.nd {
		d = w.init.SenderTarget - 1
	}
	s := (id / w.nd) % w.ns
	return w.targets[d*w.ns+s]
}

// WorkerMain is the body of `wsbench worker`.
func WorkerMain(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := &worker{out: json.NewEncoder(out)}
	if !sc.Scan() {
		return fmt.Errorf("worker: no init line")
	}
	if err := json.Unmarshal(sc.Bytes(), &w.init); err != nil {
		return fmt.Errorf("worker: init: %w", err)
	}
	if err := w.setup(); err != nil {
		w.emit(Event{Ev: "error", Error: err.Error()})
		return err
	}
	if dir := os.Getenv("WSBENCH_WORKER_PROFILE"); dir != "" {
		// CPU profile of the worker, for checking the client's own cost
		f, err := os.Create(fmt.Sprintf("%s/worker-%d-%d.pprof", dir, w.init.Index, os.Getpid()))
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	w.emit(Event{Ev: "hello", Pid: os.Getpid()})
	stopProg := make(chan struct{})
	go func() {
		pm := w.init.ProgressMs
		if pm <= 0 {
			pm = 1000
		}
		t := time.NewTicker(time.Duration(pm) * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p := w.progress()
				w.emit(Event{Ev: "progress", Progress: &p})
			case <-stopProg:
				return
			}
		}
	}()
	defer close(stopProg)
	defer w.stop()
	for sc.Scan() {
		var c Cmd
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			w.emit(Event{Ev: "error", Error: "bad command: " + err.Error()})
			continue
		}
		if c.Op == "exit" {
			w.stop()
			w.emit(Event{Ev: "reply"})
			return nil
		}
		ev, err := w.handle(&c)
		if err != nil {
			w.emit(Event{Ev: "error", Error: err.Error()})
			continue
		}
		w.emit(ev)
	}
	return sc.Err()
}

func (w *worker) setup() error {
	in := &w.init
	if len(in.Targets) == 0 {
		return fmt.Errorf("worker: no targets")
	}
	srcs := []netip.Addr{{}}
	if len(in.Sources) > 0 {
		srcs = srcs[:0]
		for _, s := range in.Sources {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("worker: source %q: %w", s, err)
			}
			srcs = append(srcs, a)
		}
	}
	for _, t := range in.Targets {
		ap, err := netip.ParseAddrPort(t)
		if err != nil {
			return fmt.Errorf("worker: target %q: %w", t, err)
		}
		for _, s := range srcs {
			tg, err := loadclient.NewTarget(ap, in.Path, s, in.Headers)
			if err != nil {
				return err
			}
			w.targets = append(w.targets, tg)
		}
	}
	w.nd, w.ns = len(in.Targets), len(srcs)
	codecName := in.Codec
	if codecName == "" {
		codecName = "raw"
	}
	codecMu.Lock()
	mk := codecs[codecName]
	codecMu.Unlock()
	if mk == nil {
		return fmt.Errorf("worker: unknown codec %q", codecName)
	}
	if in.Loops <= 0 {
		in.Loops = 1
	}
	for i := 0; i < in.Loops; i++ {
		wl := &wloop{w: w, idx: i, codec: mk(in), failures: map[string]int64{},
			connHist: hist.New(), latHist: hist.New(), lagHist: hist.New(), reopenHist: hist.New(),
			rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(in.Index*64+i))), scratch: make([]byte, 0, 64<<10)}
		l, err := loadclient.NewLoop(loadclient.Config{
			ReadBuf:        in.ReadBuf,
			ConnectTimeout: time.Duration(in.ConnectTimeoutMs) * time.Millisecond,
			MinIteration:   time.Duration(in.MinIterationUs) * time.Microsecond,
			PortLo:         in.PortLo, PortHi: in.PortHi, PortStride: in.Loops, PortOffset: i,
		}, wl)
		if err != nil {
			return err
		}
		wl.l = l
		w.loops = append(w.loops, wl)
		go l.Run()
	}
	return nil
}

func (w *worker) stop() {
	for _, wl := range w.loops {
		wl.l.Stop()
	}
	for _, wl := range w.loops {
		<-wl.l.Done()
	}
}

func (w *worker) progress() Progress {
	var p Progress
	for _, wl := range w.loops {
		p.Open += wl.l.Open()
		p.BytesIn += wl.l.BytesIn()
		c := &wl.c
		p.Connecting += c.connecting.Load()
		p.Dials += c.dials.Load()
		p.Failed += c.failed.Load()
		p.Closed += c.closed.Load()
		p.Sent += c.sent.Load()
		p.SendFailed += c.sendFailed.Load()
		p.Recv += c.recv.Load()
		p.RecvWindow += c.recvWindow.Load()
		p.SentWindow += c.sentWindow.Load()
		p.Other += c.other.Load()
		p.Reopened += c.reopened.Load()
		p.Ready += c.ready.Load()
		p.SlowRecv += c.slowRecv.Load()
		p.Errors += c.errors.Load()
		p.Dups += c.dups.Load()
	}
	return p
}

func (w *worker) handle(c *Cmd) (Event, error) {
	L := len(w.loops)
	switch c.Op {
	case "poll":
		p := w.progress()
		return Event{Ev: "reply", Progress: &p}, nil
	case "connect":
		dones := make([]chan struct{}, L)
		for i, wl := range w.loops {
			i, wl := i, wl
			want := 0
			if c.Total > i {
				want = (c.Total - i + L - 1) / L
			}
			inflight := c.InFlight / L
			if inflight < 1 {
				inflight = 1
			}
			ch := make(chan struct{})
			dones[i] = ch
			wl.l.Post(func() {
				wl.want, wl.maxInflight, wl.hold, wl.reconnect = want, inflight, c.Hold, c.Reconnect
				wl.senders, wl.slow = c.Senders, c.Slow
				wl.connecting = true
				wl.connectDone = ch
				for len(wl.conns) < want {
					wl.conns = append(wl.conns, nil)
					wl.seen = append(wl.seen, seqSet{})
					wl.tries = append(wl.tries, 0)
				}
			})
		}
		wait := time.Duration(c.WaitMs) * time.Millisecond
		if wait <= 0 {
			wait = 5 * time.Minute
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timedOut := false
		for _, ch := range dones {
			select {
			case <-ch:
			case <-timer.C:
				timedOut = true
			}
			if timedOut {
				break
			}
		}
		st := w.collect(false)
		st.TimedOut = timedOut
		return Event{Ev: "reply", Stats: st}, nil
	case "run":
		for _, wl := range w.loops {
			wl := wl
			wl.l.Post(func() {
				wl.winFrom, wl.winTo = c.MeasureFrom, c.MeasureTo
				for i := range wl.seen {
					wl.seen[i].reset()
				}
				if wl.slow > 0 {
					// slow consumers stop reading now, read again at ResumeNs
					wl.resumeAt = c.ResumeNs
					if wl.resumeAt == 0 {
						wl.resumeAt = c.StartNs + c.DurationNs
					}
					wl.paused = wl.paused[:0]
					for _, cn := range wl.conns {
						if cn != nil && cn.Tag == tagSlow && cn.IsOpen() {
							cn.SetReading(false)
							wl.paused = append(wl.paused, cn)
						}
					}
				}
				var senders []int
				for slot := range wl.conns {
					if wl.idx+slot*L < wl.senders {
						senders = append(senders, slot)
					}
				}
				if len(senders) == 0 || c.Rate <= 0 {
					wl.run = nil
					return
				}
				total := 0 // senders of the whole worker (set by connect)
				for i := 0; i < L; i++ {
					if wl.senders > i {
						total += (wl.senders - i + L - 1) / L
					}
				}
				rate := c.Rate * float64(len(senders)) / float64(total)
				op := byte(wsproto.OpBinary)
				if c.Text {
					op = wsproto.OpText
				}
				wl.run = &runState{p: pacer.New(c.StartNs, rate, c.DurationNs), senders: senders,
					from: c.MeasureFrom, to: c.MeasureTo, size: c.MsgSize, op: op,
					seqBase: uint64(w.init.Index)<<48 | uint64(wl.idx)<<40}
			})
		}
		return Event{Ev: "reply"}, nil
	case "collect":
		return Event{Ev: "reply", Stats: w.collect(true)}, nil
	case "mark":
		for _, wl := range w.loops {
			wl := wl
			wl.l.Call(func() {
				wl.markNs, wl.lastReopen = c.RefNs, 0
				wl.reopenHist.Reset()
				wl.c.reopened.Store(0)
			})
		}
		return Event{Ev: "reply"}, nil
	case "closeall":
		for _, wl := range w.loops {
			wl := wl
			wl.l.Call(func() {
				wl.reconnect, wl.connecting, wl.run, wl.redials = false, false, nil, nil
				wl.paused, wl.resumeAt = nil, 0
				for _, cn := range wl.conns {
					if cn != nil {
						cn.Close(false)
					}
				}
				wl.conns, wl.seen, wl.tries, wl.want, wl.nextSlot = nil, nil, nil, 0, 0
			})
		}
		p := w.progress()
		return Event{Ev: "reply", Progress: &p}, nil
	}
	return Event{}, fmt.Errorf("unknown op %q", c.Op)
}

func (w *worker) collect(reset bool) *Stats {
	st := &Stats{Failures: map[string]int64{}}
	ch, lh, gh, rh := hist.New(), hist.New(), hist.New(), hist.New()
	for _, wl := range w.loops {
		wl := wl
		wl.l.Call(func() {
			for k, v := range wl.failures {
				st.Failures[k] += v
			}
			ch.Merge(wl.connHist)
			lh.Merge(wl.latHist)
			gh.Merge(wl.lagHist)
			rh.Merge(wl.reopenHist)
			if wl.firstDial != 0 && (st.FirstDialNs == 0 || wl.firstDial < st.FirstDialNs) {
				st.FirstDialNs = wl.firstDial
			}
			st.LastOpenNs = max(st.LastOpenNs, wl.lastOpen)
			st.LastReopenNs = max(st.LastReopenNs, wl.lastReopen)
			if reset {
				wl.latHist.Reset()
				wl.lagHist.Reset()
			}
		})
	}
	st.Progress = w.progress()
	st.ConnectHist, st.LatencyHist, st.LagHist, st.ReopenHist = ch.Snapshot(), lh.Snapshot(), gh.Snapshot(), rh.Snapshot()
	return st
}

// ---- loadclient.Handler ----

func (wl *wloop) dial(slot int, now int64) {
	L := len(wl.w.loops)
	id := wl.idx + slot*L
	var tag uint8
	if id < wl.senders {
		tag = tagSender
	} else if id < wl.senders+wl.slow {
		tag = tagSlow
	}
	if wl.firstDial == 0 {
		wl.firstDial = now
	}
	wl.c.dials.Add(1)
	t := wl.w.target(id, tag == tagSender)
	if pc, ok := wl.codec.(PathCodec); ok {
		t = t.WithPath(pc.Path(wl.w.init.IDBase+id, tag == tagSender))
	}
	c, err := wl.l.Dial(t, int32(slot), tag)
	if err != nil {
		reason := err.Error()
		if de, ok := err.(*loadclient.DialError); ok {
			reason = de.Reason
		}
		wl.failures[reason]++
		wl.c.failed.Add(1)
		wl.conns[slot] = nil
		if wl.reconnect {
			wl.scheduleRedial(slot, now, false)
		}
		return
	}
	c.User = now
	wl.conns[slot] = c
	wl.inflight++
	wl.c.connecting.Store(int64(wl.inflight))
}

func (wl *wloop) scheduleRedial(slot int, now int64, wasOpen bool) {
	var d time.Duration
	if wasOpen {
		d = time.Duration(wl.rng.Int64N(int64(100 * time.Millisecond)))
	} else {
		t := wl.tries[slot]
		if t < 10 {
			wl.tries[slot]++
		}
		base := 50 * time.Millisecond << min(t, 4) // 50ms .. 800ms
		d = base/2 + time.Duration(wl.rng.Int64N(int64(base)))
	}
	wl.redials = append(wl.redials, redial{at: now + int64(d), slot: slot})
}

func (wl *wloop) OnOpen(c *loadclient.Conn) {
	now := wl.l.Now()
	wl.inflight--
	wl.c.connecting.Store(int64(wl.inflight))
	wl.connHist.Record(now - c.User)
	wl.lastOpen = now
	if int(c.ID) < len(wl.tries) {
		wl.tries[c.ID] = 0
	}
	if wl.markNs > 0 {
		wl.reopenHist.Record(now - wl.markNs)
		wl.c.reopened.Add(1)
		wl.lastReopen = now
	}
	wl.codec.Open(c)
	if !wl.hold && c.IsOpen() {
		c.Close(false)
	}
}

func (wl *wloop) OnMessage(c *loadclient.Conn, op byte, p []byte) {
	if lc, ok := wl.codec.(LineCodec); ok && lc.LineDelimited() {
		for len(p) > 0 && c.IsOpen() {
			line := p
			if i := bytes.IndexByte(p, '\n'); i >= 0 {
				line, p = p[:i], p[i+1:]
			} else {
				p = nil
			}
			if len(line) > 0 {
				wl.onPayload(c, line)
			}
		}
		return
	}
	wl.onPayload(c, p)
}

// onPayload counts one message: a measured payload or protocol chatter.
func (wl *wloop) onPayload(c *loadclient.Conn, p []byte) {
	intended, seq, ok := wl.codec.Decode(p)
	if !ok {
		kind := CtlOther
		if cc, isCC := wl.codec.(ControlCodec); isCC {
			kind = cc.Control(c, p)
		}
		switch kind {
		case CtlReady:
			wl.c.ready.Add(1)
		case CtlError:
			wl.c.errors.Add(1)
		case CtlOther:
			wl.c.other.Add(1)
		}
		return
	}
	if c.Tag == tagSlow {
		wl.c.slowRecv.Add(1)
		return
	}
	if slot := int(c.ID); slot < len(wl.seen) && !wl.seen[slot].add(seq) {
		wl.c.dups.Add(1)
		return
	}
	wl.c.recv.Add(1)
	// the window outlives the pacer: late echoes still count
	if intended >= wl.winFrom && intended < wl.winTo {
		wl.c.recvWindow.Add(1)
		wl.latHist.Record(wl.l.Now() - intended)
	}
}

func (wl *wloop) OnClose(c *loadclient.Conn, wasOpen bool, reason string) {
	now := wl.l.Now()
	slot := int(c.ID)
	if !wasOpen {
		wl.inflight--
		wl.c.connecting.Store(int64(wl.inflight))
		wl.failures[reason]++
		wl.c.failed.Add(1)
	} else if reason != "local" {
		wl.c.closed.Add(1)
		if c.Tag == tagSlow {
			wl.failures["slow dropped:"+reason]++
		} else {
			wl.failures["dropped:"+reason]++
		}
	}
	if slot < len(wl.conns) && wl.conns[slot] == c {
		wl.conns[slot] = nil
	}
	if wl.reconnect && reason != "local" && slot < len(wl.conns) {
		wl.scheduleRedial(slot, now, wasOpen)
	}
}

func (wl *wloop) OnTick(l *loadclient.Loop, now int64) int64 {
	var wake int64
	if wl.connecting {
		for wl.inflight < wl.maxInflight && wl.nextSlot < wl.want {
			wl.dial(wl.nextSlot, now)
			wl.nextSlot++
		}
		if wl.nextSlot >= wl.want && wl.inflight == 0 {
			wl.connecting = false
			close(wl.connectDone)
		}
	}
	if len(wl.redials) > 0 {
		j := 0
		for _, r := range wl.redials {
			if r.at <= now && r.slot < len(wl.conns) && wl.conns[r.slot] == nil {
				wl.dial(r.slot, now)
				continue
			}
			if r.at > now {
				if wake == 0 || r.at < wake {
					wake = r.at
				}
				wl.redials[j] = r
				j++
			}
		}
		wl.redials = wl.redials[:j]
	}
	if wl.resumeAt > 0 {
		if now >= wl.resumeAt {
			for _, cn := range wl.paused {
				cn.SetReading(true)
			}
			wl.paused, wl.resumeAt = wl.paused[:0], 0
		} else if wake == 0 || wl.resumeAt < wake {
			wake = wl.resumeAt
		}
	}
	if r := wl.run; r != nil {
		next := wl.sendDue(r, now)
		if next > 0 && (wake == 0 || next < wake) {
			wake = next
		}
	}
	return wake
}

func (wl *wloop) sendDue(r *runState, now int64) int64 {
	due := r.p.Due(now)
	for r.i < due {
		intended := r.p.Intended(r.i)
		slot := r.senders[r.rr]
		r.rr++
		if r.rr == len(r.senders) {
			r.rr = 0
		}
		seq := r.seqBase | uint64(r.i)
		r.i++
		inWin := intended >= r.from && intended < r.to
		c := wl.conns[slot]
		if c == nil || !c.IsOpen() {
			wl.c.sendFailed.Add(1)
			continue
		}
		if ce, ok := wl.codec.(ConnEncoder); ok {
			wl.scratch = ce.EncodeFor(c, wl.scratch[:0], intended, seq, r.size)
		} else {
			wl.scratch = wl.codec.Encode(wl.scratch[:0], intended, seq, r.size)
		}
		if err := c.WriteMessage(r.op, wl.scratch); err != nil {
			wl.c.sendFailed.Add(1)
			continue
		}
		wl.c.sent.Add(1)
		if inWin {
			wl.c.sentWindow.Add(1)
			wl.lagHist.Record(now - intended)
		}
	}
	if r.p.Done(r.i) {
		wl.run = nil
		return 0
	}
	return r.p.Intended(r.i)
}
