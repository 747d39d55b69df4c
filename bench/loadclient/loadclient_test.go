package loadclient

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench/wsproto"
)

// echoServer is a gorilla echo server on 127.0.0.1:0. Messages starting with
// "ping" make it send a ping first; "big" makes it answer with a 300 KiB frame;
// "frag" makes it answer with a fragmented message.
func echoServer(t *testing.T) (netip.AddrPort, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	// Every handler run is tracked (not just upgraded ones) so that stop()
	// returns only after all of them finished: srv.Close does not wait for
	// handlers, and a handler outliving the test is a data race.
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		if r.URL.Query().Get("deny") != "" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			switch {
			case bytes.HasPrefix(p, []byte("ping")):
				_ = c.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second))
			case bytes.HasPrefix(p, []byte("big")):
				p = bytes.Repeat([]byte("B"), 300<<10)
			case bytes.HasPrefix(p, []byte("frag")):
				// raw fragmented text message: "fr" + "agment"
				raw := append([]byte{0x01, 0x02}, p[:2]...)
				raw = append(raw, 0x80, byte(len(p)-2))
				raw = append(raw, p[2:]...)
				_, _ = c.NetConn().Write(raw)
				continue
			}
			if err := c.WriteMessage(mt, p); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	ap := netip.MustParseAddrPort(ln.Addr().String())
	return ap, func() {
		srv.Close()
		mu.Lock()
		stopped = true
		mu.Unlock()
		wg.Wait()
	}
}

type testHandler struct {
	mu       sync.Mutex
	opened   int
	closed   map[string]int
	got      map[int32][][]byte
	sendOnOp func(c *Conn)
}

func (h *testHandler) OnOpen(c *Conn) {
	h.mu.Lock()
	h.opened++
	h.mu.Unlock()
	if h.sendOnOp != nil {
		h.sendOnOp(c)
	}
}
func (h *testHandler) OnMessage(c *Conn, op byte, p []byte) {
	h.mu.Lock()
	h.got[c.ID] = append(h.got[c.ID], append([]byte(nil), p...))
	h.mu.Unlock()
}
func (h *testHandler) OnClose(c *Conn, wasOpen bool, reason string) {
	h.mu.Lock()
	h.closed[reason]++
	h.mu.Unlock()
}
func (h *testHandler) OnTick(l *Loop, now int64) int64 { return 0 }

func (h *testHandler) snapshot() (int, int, map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.got {
		n += len(v)
	}
	cl := map[string]int{}
	for k, v := range h.closed {
		cl[k] = v
	}
	return h.opened, n, cl
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestEchoAgainstGorilla(t *testing.T) {
	addr, stop := echoServer(t)
	defer stop()
	h := &testHandler{closed: map[string]int{}, got: map[int32][][]byte{}}
	l, err := NewLoop(Config{ReadBuf: 64 << 10}, h)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	defer func() { l.Stop(); <-l.Done() }()

	src := netip.MustParseAddr("127.0.0.2") // exercise source binding
	tg, err := NewTarget(addr, "/ws", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	const nConns, nMsgs = 8, 20
	conns := make([]*Conn, nConns)
	l.Call(func() {
		for i := range conns {
			c, err := l.Dial(tg, int32(i), 0)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			conns[i] = c
		}
	})
	waitFor(t, "opens", func() bool { o, _, _ := h.snapshot(); return o == nConns })
	if l.Open() != nConns {
		t.Fatalf("Open()=%d", l.Open())
	}
	l.Call(func() {
		var p [16]byte
		for m := 0; m < nMsgs; m++ {
			for i, c := range conns {
				binary.LittleEndian.PutUint64(p[:], uint64(i))
				binary.LittleEndian.PutUint64(p[8:], uint64(m))
				if err := c.WriteMessage(wsproto.OpBinary, p[:]); err != nil {
					t.Errorf("write: %v", err)
				}
			}
		}
	})
	waitFor(t, "echoes", func() bool { _, n, _ := h.snapshot(); return n == nConns*nMsgs })
	h.mu.Lock()
	for i := int32(0); i < nConns; i++ {
		msgs := h.got[i]
		for m, p := range msgs {
			if len(p) != 16 || binary.LittleEndian.Uint64(p) != uint64(i) || binary.LittleEndian.Uint64(p[8:]) != uint64(m) {
				t.Errorf("conn %d msg %d: bad echo %x", i, m, p)
			}
		}
	}
	h.got = map[int32][][]byte{}
	h.mu.Unlock()

	// ping handling, a frame larger than the read buffer, a fragmented message
	l.Call(func() {
		_ = conns[0].WriteMessage(wsproto.OpText, []byte("ping-me"))
		_ = conns[1].WriteMessage(wsproto.OpText, []byte("big"))
		_ = conns[2].WriteMessage(wsproto.OpText, []byte("fragment"))
	})
	waitFor(t, "big+ping+frag", func() bool { _, n, _ := h.snapshot(); return n == 3 })
	h.mu.Lock()
	if string(h.got[0][0]) != "ping-me" {
		t.Errorf("ping conn got %q", h.got[0][0])
	}
	if len(h.got[1][0]) != 300<<10 || h.got[1][0][300<<10-1] != 'B' {
		t.Errorf("big frame len %d", len(h.got[1][0]))
	}
	if string(h.got[2][0]) != "fr" {
		t.Errorf("first fragment %q", h.got[2][0])
	}
	h.mu.Unlock()
	// connection 2 must still parse frames after the fragmented message
	l.Call(func() { _ = conns[2].WriteMessage(wsproto.OpText, []byte("after")) })
	waitFor(t, "after-frag", func() bool { _, n, _ := h.snapshot(); return n == 4 })

	l.Call(func() {
		for _, c := range conns {
			c.Close(true)
		}
	})
	_, _, cl := h.snapshot()
	if cl["local"] != nConns {
		t.Fatalf("closes %v", cl)
	}
	if l.Open() != 0 {
		t.Fatalf("open after close %d", l.Open())
	}
}

func TestFailureReasons(t *testing.T) {
	addr, stop := echoServer(t)
	defer stop()
	h := &testHandler{closed: map[string]int{}, got: map[int32][][]byte{}}
	l, err := NewLoop(Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	defer func() { l.Stop(); <-l.Done() }()

	// refused: a port nobody listens on
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	tDead, _ := NewTarget(dead, "/ws", netip.Addr{}, nil)
	tDeny, _ := NewTarget(addr, "/ws?deny=1", netip.Addr{}, nil)
	l.Call(func() {
		if _, err := l.Dial(tDead, 1, 0); err != nil {
			h.OnClose(nil, false, err.(*DialError).Reason)
		}
		if _, err := l.Dial(tDeny, 2, 0); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "failures", func() bool { _, _, cl := h.snapshot(); return cl["refused"] == 1 && cl["status 403"] == 1 })
	o, _, _ := h.snapshot()
	if o != 0 {
		t.Fatalf("opened %d", o)
	}
}

func TestUpgradeTimeout(t *testing.T) {
	// a TCP server that accepts and never answers
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	h := &testHandler{closed: map[string]int{}, got: map[int32][][]byte{}}
	l, err := NewLoop(Config{ConnectTimeout: 150 * time.Millisecond}, h)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	defer func() { l.Stop(); <-l.Done() }()
	tg, _ := NewTarget(netip.MustParseAddrPort(ln.Addr().String()), "/ws", netip.Addr{}, nil)
	l.Call(func() { _, _ = l.Dial(tg, 1, 0) })
	waitFor(t, "upgrade-timeout", func() bool { _, _, cl := h.snapshot(); return cl["upgrade-timeout"] == 1 })
}

// stampHandler records the loop clock at every delivery, per connection.
type stampHandler struct {
	testHandler
	stamps map[int32][]int64
}

func (h *stampHandler) OnMessage(c *Conn, op byte, p []byte) {
	h.mu.Lock()
	h.stamps[c.ID] = append(h.stamps[c.ID], c.Loop().Now())
	h.mu.Unlock()
	h.testHandler.OnMessage(c, op, p)
}

// Frames of different connections that one epoll_wait reports together get
// their own receive stamps (taken after each read), not the wait's time.
func TestReceiveStampPerRead(t *testing.T) {
	addr, stop := echoServer(t)
	defer stop()
	h := &stampHandler{testHandler: testHandler{closed: map[string]int{}, got: map[int32][][]byte{}}, stamps: map[int32][]int64{}}
	// a long minimum iteration: the loop sleeps while both echoes arrive,
	// so one epoll_wait returns both sockets
	l, err := NewLoop(Config{MinIteration: 200 * time.Millisecond}, h)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	defer func() { l.Stop(); <-l.Done() }()
	tg, err := NewTarget(addr, "/ws", netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*Conn, 2)
	l.Call(func() {
		for i := range conns {
			if conns[i], err = l.Dial(tg, int32(i), 0); err != nil {
				t.Errorf("dial: %v", err)
			}
		}
	})
	waitFor(t, "opens", func() bool { o, _, _ := h.snapshot(); return o == 2 })
	var before int64
	l.Call(func() {
		before = time.Now().UnixNano()
		for _, c := range conns {
			_ = c.WriteMessage(wsproto.OpBinary, []byte("stamp"))
		}
	})
	waitFor(t, "echoes", func() bool { _, n, _ := h.snapshot(); return n == 2 })
	h.mu.Lock()
	defer h.mu.Unlock()
	a, b := h.stamps[0][0], h.stamps[1][0]
	if a < before || b < before {
		t.Fatalf("stamps %d %d before the send at %d", a, b, before)
	}
	if a == b {
		t.Fatalf("both connections' frames stamped %d: one stamp per epoll_wait, not per read", a)
	}
}
