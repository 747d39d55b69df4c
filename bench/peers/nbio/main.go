// Command nbio is a reference WebSocket server on github.com/lesismal/nbio
// (nbhttp + nbhttp/websocket) in its non-blocking mode.
//
//	nbio -addr 127.0.0.1:9002 -mode echo|broadcast -pollers 2 [-executor poller|pool] [-hub batch|mutex]
//
// echo: every text/binary message is sent back unchanged.
// broadcast: every message is sent unchanged to every OTHER open connection.
//
// The default (-executor poller -hub batch) is the configuration nbio's
// authors point to for a light handler under load: the handler runs on the
// poller goroutine that parsed the frame (no hand-off to nbhttp's goroutine
// pool), and broadcast goes through a hub that batches: frames published
// while the hub is writing are concatenated and written to each receiver
// with one Write, from a copy-on-write receiver list (no lock per receiver).
// -executor pool -hub mutex is the earlier peer (nbhttp's default message
// handler pool, one Write per frame per receiver under a RWMutex): wsbench
// target "nbio-pool".
package main

import (
	"encoding/binary"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// appendFrame appends an unmasked server frame.
func appendFrame(b []byte, mt websocket.MessageType, p []byte) []byte {
	n := len(p)
	b = append(b, 0x80|byte(mt))
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n < 65536:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

// mutexHub is the earlier broadcast: one frame per message, written to every
// receiver under a read lock.
type mutexHub struct {
	mu    sync.RWMutex
	conns map[*websocket.Conn]struct{}
}

func (h *mutexHub) add(c *websocket.Conn) { h.mu.Lock(); h.conns[c] = struct{}{}; h.mu.Unlock() }
func (h *mutexHub) del(c *websocket.Conn) { h.mu.Lock(); delete(h.conns, c); h.mu.Unlock() }
func (h *mutexHub) publish(from *websocket.Conn, mt websocket.MessageType, p []byte) {
	fr := appendFrame(nil, mt, p)
	h.mu.RLock()
	for o := range h.conns {
		if o != from {
			_, _ = o.Conn.Write(fr) // nbio.Conn.Write keeps what it cannot send now
		}
	}
	h.mu.RUnlock()
}

// batchHub collects the frames published since its last flush and writes
// them to every receiver as one buffer. The publisher that finds the hub
// idle becomes the flusher (on its poller); publishers arriving meanwhile
// only append. The pending batch is bounded (maxBatch): a publisher that
// finds it full waits until the flusher has taken it, so memory stays
// bounded and no frame is dropped.
type batchHub struct {
	mu       sync.Mutex
	pending  []byte
	senders  []*websocket.Conn // sender of each pending frame, nil-free
	offsets  []int             // start of each pending frame in pending
	flushing bool
	taken    *sync.Cond // signalled when the flusher takes the pending batch
	spare    []byte
	conns    atomic.Pointer[[]*websocket.Conn] // copy-on-write receiver list
	connMu   sync.Mutex                        // serialises add/del
}

const maxBatch = 1 << 20

func (h *batchHub) add(c *websocket.Conn) {
	h.connMu.Lock()
	old := h.conns.Load()
	var n []*websocket.Conn
	if old != nil {
		n = append(n, (*old)...)
	}
	n = append(n, c)
	h.conns.Store(&n)
	h.connMu.Unlock()
}

func (h *batchHub) del(c *websocket.Conn) {
	h.connMu.Lock()
	old := h.conns.Load()
	if old != nil {
		n := make([]*websocket.Conn, 0, len(*old))
		for _, o := range *old {
			if o != c {
				n = append(n, o)
			}
		}
		h.conns.Store(&n)
	}
	h.connMu.Unlock()
}

func (h *batchHub) publish(from *websocket.Conn, mt websocket.MessageType, p []byte) {
	h.mu.Lock()
	for h.flushing && len(h.pending) >= maxBatch {
		h.taken.Wait() // full: the flusher takes the batch soon
	}
	h.offsets = append(h.offsets, len(h.pending))
	h.senders = append(h.senders, from)
	h.pending = appendFrame(h.pending, mt, p)
	if h.flushing {
		h.mu.Unlock()
		return // the current flusher picks it up
	}
	h.flushing = true
	for len(h.pending) > 0 {
		batch, senders, offsets := h.pending, h.senders, h.offsets
		h.pending, h.senders, h.offsets = h.spare[:0], nil, nil
		h.taken.Broadcast()
		h.mu.Unlock()
		h.write(batch, senders, offsets)
		h.mu.Lock()
		h.spare = batch[:0]
	}
	h.flushing = false
	h.mu.Unlock()
}

// write sends batch to every receiver; a receiver that sent some of the
// frames gets the batch without its own frames (broadcast goes to OTHER
// connections).
func (h *batchHub) write(batch []byte, senders []*websocket.Conn, offsets []int) {
	cs := h.conns.Load()
	if cs == nil {
		return
	}
	for _, o := range *cs {
		own := false
		for _, s := range senders {
			if s == o {
				own = true
				break
			}
		}
		if !own {
			_, _ = o.Conn.Write(batch) // one write per receiver per batch
			continue
		}
		for i, s := range senders {
			if s == o {
				continue
			}
			end := len(batch)
			if i+1 < len(offsets) {
				end = offsets[i+1]
			}
			_, _ = o.Conn.Write(batch[offsets[i]:end])
		}
	}
}

type hub interface {
	add(*websocket.Conn)
	del(*websocket.Conn)
	publish(*websocket.Conn, websocket.MessageType, []byte)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "listen address")
	mode := flag.String("mode", "echo", "echo or broadcast")
	pollers := flag.Int("pollers", 2, "nbio poller goroutines")
	executor := flag.String("executor", "poller", "where OnMessage runs: poller (inline on the poller goroutine) or pool (nbhttp's default goroutine pool)")
	hubKind := flag.String("hub", "batch", "broadcast hub: batch (one write per receiver per batch) or mutex (one write per frame per receiver under a RWMutex)")
	flag.Parse()
	if *mode != "echo" && *mode != "broadcast" {
		log.Fatalf("unknown -mode %q", *mode)
	}
	if *executor != "poller" && *executor != "pool" {
		log.Fatalf("unknown -executor %q", *executor)
	}
	logging.SetLevel(logging.LevelError)
	bh := &batchHub{}
	bh.taken = sync.NewCond(&bh.mu)
	var h hub = bh
	if *hubKind == "mutex" {
		h = &mutexHub{conns: map[*websocket.Conn]struct{}{}}
	} else if *hubKind != "batch" {
		log.Fatalf("unknown -hub %q", *hubKind)
	}

	up := websocket.NewUpgrader()
	up.KeepaliveTime = 0 // no idle read deadline (idle-density runs hold connections for minutes)
	up.CheckOrigin = func(*http.Request) bool { return true }
	if *mode == "echo" {
		up.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			_ = c.WriteMessage(mt, data)
		})
	} else {
		up.OnOpen(h.add)
		up.OnClose(func(c *websocket.Conn, err error) { h.del(c) })
		up.OnMessage(h.publish)
	}
	mux := &http.ServeMux{}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if _, err := up.Upgrade(w, r, nil); err != nil {
			return
		}
	})
	conf := nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{*addr},
		Handler: mux,
		NPoller: *pollers,
		// Release the payload buffer after OnMessage returns (the handler
		// copies what it keeps): as in nbio's own benchmark servers,
		// github.com/lesismal/go-websocket-benchmark frameworks/nbio_nonblocking/server.go.
		ReleaseWebsocketPayload: true,
	}
	if *executor == "poller" {
		// Run the message handler on the poller that parsed the frame
		// instead of nbhttp's default pool of runtime.NumCPU()*1024
		// goroutines (nbhttp/engine.go NewEngine: "if serverExecutor == nil
		// { ... taskpool.New(...) }"). nbio's author on customising it:
		// "也可以通过设置 conf.ServerExecutor 来自行定制逻辑协程池"
		// (github.com/lesismal/nbio-examples/issues/3); nbhttp.NewServer takes
		// the same hook as its "messageHandlerExecutor" argument
		// (nbhttp/server.go). Safe here: the handlers never block (echo
		// writes through nbio's non-blocking Conn.Write, which buffers
		// what the socket refuses).
		conf.ServerExecutor = func(f func()) { f() }
	}
	engine := nbhttp.NewEngine(conf)
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	log.Printf("nbio peer mode=%s pollers=%d executor=%s hub=%s listening on %s", *mode, *pollers, *executor, *hubKind, *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	engine.Stop()
}
