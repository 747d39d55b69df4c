package router

// Shared helpers of the integration tests (integration_*_test.go): a gorilla
// client with a background reader, so that tests can wait for "nothing
// more" without corrupting the connection, speak gw.json or gw.msgpack, and
// observe close codes; and small helpers to read the gateway's counters.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// waitFor is how long a test waits for something that should happen.
const waitFor = 5 * time.Second

// quiet is how long a test watches for something that must not happen.
const quiet = 150 * time.Millisecond

// inMsg is one message a tclient received.
type inMsg struct {
	op  int            // websocket.TextMessage or BinaryMessage
	raw []byte         // the payload as received
	m   map[string]any // decoded (msgpack transcoded to JSON first); nil if undecodable
	err error          // decode error
	at  time.Time      // when the reader got it (for deadline tests)
}

// tclient is a gorilla client whose reader goroutine feeds a channel. With
// buf 0 the reader blocks after one message until the test consumes it, so
// a test that stops consuming stops reading from the socket (backpressure).
type tclient struct {
	t     testing.TB
	conn  *websocket.Conn
	codec wire.Codec
	user  string // set by gateway.user / userWith
	in    chan inMsg
	done  chan struct{} // closed when the reader ends; err and endedAt are set then
	err   error
	// endedAt is when the reader saw the connection end (close frame or
	// error), for deadline tests.
	endedAt time.Time
	stop    chan struct{}
	once    sync.Once
	wmu     sync.Mutex
}

// dialOpts are the knobs of a test dial.
type dialOpts struct {
	query     string // ?token=
	bearer    string // Authorization: Bearer
	protocols []string
	rcvbuf    int  // SO_RCVBUF of the client socket when > 0
	buf       int  // reader channel size; 0 means the default (4096), -1 unbuffered
	noPong    bool // do not answer the gateway's pings
}

// tryDial dials without failing the test: for refused upgrades.
func (g *gateway) tryDial(o dialOpts) (*websocket.Conn, *http.Response, error) {
	u := g.url()
	if o.query != "" {
		u += "?token=" + o.query
	}
	h := http.Header{}
	if o.bearer != "" {
		h.Set("Authorization", "Bearer "+o.bearer)
	}
	d := websocket.Dialer{Subprotocols: o.protocols, HandshakeTimeout: waitFor}
	if o.rcvbuf > 0 {
		nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}}
		d.NetDialContext = nd.DialContext
	}
	return d.Dial(u, h)
}

// connect dials and starts the reader; the test fails if the upgrade fails.
func (g *gateway) connect(o dialOpts) *tclient {
	g.t.Helper()
	conn, resp, err := g.tryDial(o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		g.t.Fatalf("dial: %v (status %d)", err, status)
	}
	codec := wire.CodecJSON
	if conn.Subprotocol() == wire.SubprotocolMsgpack {
		codec = wire.CodecMsgpack
	}
	size := o.buf
	switch size {
	case 0:
		size = 4096
	case -1:
		size = 0
	}
	c := &tclient{t: g.t, conn: conn, codec: codec, in: make(chan inMsg, size), done: make(chan struct{}), stop: make(chan struct{})}
	if o.noPong {
		conn.SetPingHandler(func(string) error { return nil })
	}
	go c.readLoop()
	g.t.Cleanup(c.close)
	return c
}

// user connects as sub (token on the query) and consumes auth:ok.
func (g *gateway) user(sub string, protocols ...string) *tclient {
	g.t.Helper()
	return g.userWith(auth.Claims{Sub: sub}, dialOpts{protocols: protocols})
}

// userWith connects with the claims' token on the query and consumes auth:ok.
func (g *gateway) userWith(cl auth.Claims, o dialOpts) *tclient {
	g.t.Helper()
	o.query = token(g.t, cl)
	c := g.connect(o)
	ok := c.expect("auth:ok")
	if ok["user"] != cl.Sub {
		g.t.Fatalf("auth:ok %v: want user %q", ok, cl.Sub)
	}
	c.user = cl.Sub
	return c
}

func (c *tclient) close() {
	c.once.Do(func() {
		close(c.stop)
		_ = c.conn.Close()
	})
}

func (c *tclient) readLoop() {
	defer close(c.done)
	for {
		op, b, err := c.conn.ReadMessage()
		if err != nil {
			c.err, c.endedAt = err, time.Now()
			return
		}
		m := inMsg{op: op, raw: b, at: time.Now()}
		js := b
		if op == websocket.BinaryMessage {
			js, m.err = wire.MsgpackToJSON(nil, b)
		}
		if m.err == nil {
			m.err = json.Unmarshal(js, &m.m)
		}
		select {
		case c.in <- m:
		case <-c.stop:
			return
		}
	}
}

// next returns the next message, or false when none came within d or the
// connection ended.
func (c *tclient) next(d time.Duration) (inMsg, bool) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case m := <-c.in:
		return m, true
	case <-tm.C:
		return inMsg{}, false
	case <-c.done:
		select { // the reader may have queued messages before it ended
		case m := <-c.in:
			return m, true
		default:
			return inMsg{}, false
		}
	}
}

// read returns the next decoded message, checking its frame type against
// the negotiated codec.
func (c *tclient) read() map[string]any {
	c.t.Helper()
	m, ok := c.next(waitFor)
	if !ok {
		c.t.Fatalf("%s: no message within %v (reader: %v)", c, waitFor, c.readErr())
	}
	return c.check(m)
}

func (c *tclient) check(m inMsg) map[string]any {
	c.t.Helper()
	if m.err != nil {
		c.t.Fatalf("%s: undecodable message %q: %v", c, m.raw, m.err)
	}
	want := websocket.TextMessage
	if c.codec == wire.CodecMsgpack {
		want = websocket.BinaryMessage
	}
	if m.op != want {
		c.t.Fatalf("%s: frame type %d for %s, want %d (%q)", c, m.op, c.codec, want, m.raw)
	}
	return m.m
}

func (c *tclient) readErr() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// expect reads the next message and fails unless it has type typ.
func (c *tclient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != typ {
		c.t.Fatalf("%s: got %v, want type %q", c, m, typ)
	}
	return m
}

// expectErr reads the next message and fails unless it is an error with code.
func (c *tclient) expectErr(code string) map[string]any {
	c.t.Helper()
	m := c.read()
	if m["type"] != "error" || m["code"] != code {
		c.t.Fatalf("%s: got %v, want error %q", c, m, code)
	}
	if _, ok := m["message"].(string); !ok {
		c.t.Fatalf("%s: error without message text: %v", c, m)
	}
	return m
}

// none fails if a message arrives within d.
func (c *tclient) none(d time.Duration) {
	c.t.Helper()
	if m, ok := c.next(d); ok {
		c.t.Fatalf("%s: unexpected message %q", c, m.raw)
	}
}

// expectClose drains messages until the connection ends and checks that the
// gateway closed it with code.
func (c *tclient) expectClose(code int) {
	c.t.Helper()
	tm := time.NewTimer(2 * waitFor)
	defer tm.Stop()
	for {
		select {
		case <-c.in:
			continue
		case <-c.done:
		case <-tm.C:
			c.t.Fatalf("%s: not closed within %v, want close %d", c, 2*waitFor, code)
		}
		break
	}
	var ce *websocket.CloseError
	if !errors.As(c.err, &ce) {
		c.t.Fatalf("%s: connection ended with %v, want close frame %d", c, c.err, code)
	}
	if ce.Code != code {
		c.t.Fatalf("%s: close code %d (%q), want %d", c, ce.Code, ce.Text, code)
	}
}

// send writes a message: a string or []byte is sent as JSON text as is (for
// msgpack clients it is transcoded first, so it must be valid JSON), anything
// else is marshalled.
func (c *tclient) send(v any) {
	c.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatalf("marshal: %v", err)
		}
	}
	op := websocket.TextMessage
	if c.codec == wire.CodecMsgpack {
		mp, err := wire.JSONToMsgpack(nil, b)
		if err != nil {
			c.t.Fatalf("transcode %q to msgpack: %v", b, err)
		}
		b, op = mp, websocket.BinaryMessage
	}
	c.sendRaw(op, b)
}

// sendRaw writes one message of frame type op unchanged.
func (c *tclient) sendRaw(op int, b []byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.WriteMessage(op, b); err != nil {
		c.t.Fatalf("%s: write: %v", c, err)
	}
}

// writeWire writes bytes straight onto the TCP connection (hand-built frames).
func (c *tclient) writeWire(b []byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.UnderlyingConn().Write(b); err != nil {
		c.t.Fatalf("%s: raw write: %v", c, err)
	}
}

// alive checks that the connection still works: a ping gets its pong.
func (c *tclient) alive() {
	c.t.Helper()
	c.send(`{"type":"ping","id":"alive"}`)
	m := c.expect("pong")
	if m["id"] != "alive" {
		c.t.Fatalf("%s: pong %v without the ping's id", c, m)
	}
	if _, ok := m["ts"].(float64); !ok {
		c.t.Fatalf("%s: pong without ts: %v", c, m)
	}
}

// join joins room and consumes the joined reply.
func (c *tclient) join(room string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"join","room":%q,"id":"j-%s"}`, room, room))
	m := c.expect("joined")
	if m["room"] != room || m["id"] != "j-"+room {
		c.t.Fatalf("%s: joined %v, want room %q", c, m, room)
	}
}

// subscribe subscribes to channel and consumes the reply.
func (c *tclient) subscribe(ch string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"subscribe","channel":%q}`, ch))
	if m := c.expect("subscribed"); m["channel"] != ch {
		c.t.Fatalf("%s: subscribed %v, want %q", c, m, ch)
	}
}

// expectDelivery reads a delivered message and checks the contract fields
// every delivery carries: the address, from, an id and a recent ts.
func (c *tclient) expectDelivery(key, name, from string) map[string]any {
	c.t.Helper()
	m := c.expect("message")
	checkDelivery(c.t, m, key, name, from)
	return m
}

func checkDelivery(t testing.TB, m map[string]any, key, name, from string) {
	t.Helper()
	if m[key] != name || m["from"] != from {
		t.Fatalf("delivery %v: want %s %q from %q", m, key, name, from)
	}
	if id, _ := m["id"].(string); id == "" {
		t.Fatalf("delivery without gateway id: %v", m)
	}
	ts, ok := m["ts"].(float64)
	if now := float64(time.Now().UnixMilli()); !ok || ts < now-60_000 || ts > now+5_000 {
		t.Fatalf("delivery ts %v is not a recent unix-ms time: %v", m["ts"], m)
	}
	if _, ok := m["data"]; !ok {
		t.Fatalf("delivery without data: %v", m)
	}
}

// connLoop returns the event loop index encoded in an auth:ok conn id
// (engine connection ids carry the loop index in their top 16 bits).
func connLoop(t testing.TB, authOK map[string]any) int {
	t.Helper()
	s, _ := authOK["conn"].(string)
	id, err := strconv.ParseUint(s, 36, 64)
	if err != nil {
		t.Fatalf("auth:ok conn %q: %v", s, err)
	}
	return int(id >> 48)
}

func (c *tclient) String() string { return fmt.Sprint(c.conn.LocalAddr()) }

// routerStats folds the router's per-loop counters.
func (g *gateway) routerStats() ShardStats {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	per, err := g.router.Stats(ctx)
	if err != nil {
		g.t.Fatalf("router stats: %v", err)
	}
	var s ShardStats
	for i := range per {
		s.Add(&per[i])
	}
	return s
}

// engineStats folds the engine's per-loop counters.
func (g *gateway) engineStats() engine.LoopStats {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	per, err := g.eng.Stats(ctx)
	if err != nil {
		g.t.Fatalf("engine stats: %v", err)
	}
	var s engine.LoopStats
	for i := range per {
		s.Add(&per[i])
	}
	return s
}

// eventually polls cond every few milliseconds until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// maskedFrame builds one masked client frame (FIN set) by hand.
func maskedFrame(op byte, payload []byte) []byte {
	return maskedFrameFin(true, op, payload)
}

func maskedFrameFin(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// filler returns a JSON string value of about n bytes.
func filler(n int) string { return `"` + strings.Repeat("x", n) + `"` }

func mustUnmarshal(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("unmarshal %s: %v", s, err)
	}
}
