package natsbp

import (
	"context"
	"encoding/json"
	"fmt"
	clientwire "github.com/wsgate/wsgate/wire"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
)

var secret = []byte("natsbp-test-secret")

// startNATS runs a real NATS server on a random loopback port (or port, to
// restart one in place).
func startNATS(t testing.TB, port int) *server.Server {
	t.Helper()
	s, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:" + strconv.Itoa(port)})
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// instance is one gateway (engine + router + NATS backplane).
type instance struct {
	t      testing.TB
	eng    *engine.Engine
	router *router.Router
	bp     *Backplane
}

func startInstance(t testing.TB, id string, bo Options) *instance {
	t.Helper()
	return startInstanceWith(t, id, bo, 2, nil)
}

// startInstanceWith is startInstance with a number of event loops and a
// chance to change the router's options (tune may be nil).
func startInstanceWith(t testing.TB, id string, bo Options, loops int, tune func(*router.Options)) *instance {
	t.Helper()
	bo.ReconnectWait = 50 * time.Millisecond
	bo.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	bp := New(bo)
	ro := router.Options{InstanceID: id, Auth: auth.Config{Secret: secret}, Backplane: bp}
	if tune != nil {
		tune(&ro)
	}
	r, err := router.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Addr: "127.0.0.1:0", Loops: loops}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(e); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, eng: e, router: r, bp: bp}
	t.Cleanup(in.stop)
	return in
}

// stop stops the engine, then the router and its backplane (idempotent).
func (in *instance) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = in.eng.Stop(ctx)
	_ = in.router.Close()
}

type client struct {
	t    testing.TB
	conn *websocket.Conn
	gaps int // backplane gaps skipped by expectPastGap
}

func (in *instance) dial(user string) *client {
	in.t.Helper()
	tok, err := auth.MintHS256(secret, auth.Claims{Sub: user, Pub: []string{"**"}}, time.Hour)
	if err != nil {
		in.t.Fatal(err)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		in.t.Fatalf("dial: %v", err)
	}
	in.t.Cleanup(func() { _ = c.Close() })
	cl := &client{t: in.t, conn: c}
	cl.expect("auth:ok")
	return cl
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message, or nil after d without one.
func (c *client) next(d time.Duration) map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			return nil
		}
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next(5 * time.Second)
	if m == nil || m["type"] != typ {
		c.t.Fatalf("got %v, want %q", m, typ)
	}
	return m
}

// expectPastGap is expect, skipping (and counting) `gap {reason:
// "backplane"}` messages, which an instance sends its clients after it
// restored a lost NATS connection.
func (c *client) expectPastGap(typ string) map[string]any {
	c.t.Helper()
	for {
		m := c.next(5 * time.Second)
		if m != nil && m["type"] == "gap" && m["reason"] == "backplane" && typ != "gap" {
			c.gaps++
			continue
		}
		if m == nil || m["type"] != typ {
			c.t.Fatalf("got %v, want %q", m, typ)
		}
		return m
	}
}

// quiet asserts nothing more arrives for a while (no duplicates).
func (c *client) quiet() {
	c.t.Helper()
	// A gorilla read deadline poisons the connection, so this must be the
	// client's last read.
	if m := c.next(300 * time.Millisecond); m != nil {
		c.t.Fatalf("unexpected extra message %v", m)
	}
}

// waitSubscribed waits until in's backplane has n subscriptions and NATS
// has them (a Flush round trip after the SUBs).
func (in *instance) waitSubscribed(n int) {
	in.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for in.bp.Stats().Subscriptions < n {
		if time.Now().After(deadline) {
			in.t.Fatalf("subscriptions %d, want %d", in.bp.Stats().Subscriptions, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := in.bp.Conn().Flush(); err != nil {
		in.t.Fatal(err)
	}
}

func TestRoomAcrossInstancesExactlyOnce(t *testing.T) {
	ns := startNATS(t, 0)
	a := startInstance(t, "a", Options{URLs: []string{ns.ClientURL()}})
	b := startInstance(t, "b", Options{URLs: []string{ns.ClientURL()}})
	alice, carol := a.dial("alice"), a.dial("carol")
	bob := b.dial("bob")
	for _, c := range []*client{alice, carol, bob} {
		c.send(`{"type":"join","room":"lobby"}`)
		c.expect("joined")
	}
	// a: gw.all, gw.user.alice, gw.user.carol, gw.room.lobby; b: gw.all, gw.user.bob, gw.room.lobby
	a.waitSubscribed(4)
	b.waitSubscribed(3)
	before := b.bp.Stats().Received
	const n = 20
	for i := 0; i < n; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"lobby","data":%d}`, i))
	}
	seen := map[string]bool{}
	for _, c := range []*client{carol, bob} {
		for i := 0; i < n; i++ {
			m := c.expect("message")
			if m["data"] != float64(i) || m["from"] != "alice" {
				t.Fatalf("message %d: %v", i, m)
			}
			id := m["id"].(string)
			if c == carol {
				seen[id] = true
			} else if !seen[id] {
				t.Fatalf("bob got id %s that carol did not", id)
			}
		}
		c.quiet()
	}
	if got := b.bp.Stats().Received - before; got != n {
		t.Fatalf("instance b received %d NATS messages for %d client messages, want exactly one each", got, n)
	}
	if got := a.bp.Stats().Received; got != 0 {
		t.Fatalf("instance a received %d of its own messages back", got)
	}
	alice.quiet()
}

func TestSendAndChannelAcrossInstances(t *testing.T) {
	ns := startNATS(t, 0)
	a := startInstance(t, "a", Options{URLs: []string{ns.ClientURL()}})
	b := startInstance(t, "b", Options{URLs: []string{ns.ClientURL()}})
	alice, bob := a.dial("alice"), b.dial("bob")
	bob.send(`{"type":"subscribe","channel":"prices.btc"}`)
	bob.expect("subscribed")
	b.waitSubscribed(3)
	alice.send(`{"type":"send","to":"bob","data":"psst","id":"s1"}`)
	ack := alice.expect("ack")
	if ack["delivered"] != float64(0) || ack["remote"] != true {
		t.Fatalf("send ack %v, want delivered 0 (bob is not on a) and remote", ack)
	}
	if m := bob.expect("message"); m["to"] != "bob" || m["data"] != "psst" || m["from"] != "alice" {
		t.Fatalf("p2p %v", m)
	}
	alice.send(`{"type":"publish","channel":"prices.btc","data":{"p":1},"id":"p1"}`)
	alice.expect("ack")
	if m := bob.expect("message"); m["channel"] != "prices.btc" {
		t.Fatalf("channel %v", m)
	}
}

func TestServicesPublishViaNATSAndRouter(t *testing.T) {
	ns := startNATS(t, 0)
	a := startInstance(t, "a", Options{URLs: []string{ns.ClientURL()}})
	b := startInstance(t, "b", Options{URLs: []string{ns.ClientURL()}})
	alice, bob := a.dial("alice"), b.dial("bob")
	for _, c := range []*client{alice, bob} {
		c.send(`{"type":"join","room":"news"}`)
		c.expect("joined")
	}
	a.waitSubscribed(3)
	b.waitSubscribed(3)
	svc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	mustPublish := func(subj, payload string) {
		t.Helper()
		if err := svc.Publish(subj, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		if err := svc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish("gw.room.news", `{"data":{"headline":"x"},"from":"newsdesk"}`)
	mustPublish("gw.all", `{"data":"maintenance at 5","priority":"high"}`)
	mustPublish("gw.user.bob", `{"data":"just bob"}`)
	for _, c := range []*client{alice, bob} {
		m := c.expect("message")
		if m["room"] != "news" || m["from"] != "newsdesk" || m["id"] == nil || m["ts"] == nil {
			t.Fatalf("service room message %v", m)
		}
		if m := c.expect("message"); m["data"] != "maintenance at 5" {
			t.Fatalf("gw.all %v", m)
		}
	}
	if m := bob.expect("message"); m["to"] != "bob" || m["data"] != "just bob" {
		t.Fatalf("gw.user %v", m)
	}
	// The HTTP API's path: a service message entering through one instance.
	if err := a.router.PublishService(router.KindRoom, "news", []byte(`{"via":"http"}`), "api", clientwire.PriorityNormal, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, bob} {
		if m := c.expect("message"); m["from"] != "api" {
			t.Fatalf("PublishService %v", m)
		}
	}
	// Garbage on a subject is counted, not delivered.
	mustPublish("gw.room.news", `not json`)
	deadline := time.Now().Add(5 * time.Second)
	for a.bp.Stats().DecodeErrors == 0 || b.bp.Stats().DecodeErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("decode errors not counted: %+v %+v", a.bp.Stats(), b.bp.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	bob.quiet()
}

func TestNATSOutageAndRecovery(t *testing.T) {
	ns := startNATS(t, 0)
	url := ns.ClientURL()
	p, _ := strconv.Atoi(url[len("nats://127.0.0.1:"):])
	a := startInstance(t, "a", Options{URLs: []string{url}})
	b := startInstance(t, "b", Options{URLs: []string{url}})
	alice, bob := a.dial("alice"), b.dial("bob")
	for _, c := range []*client{alice, bob} {
		c.send(`{"type":"join","room":"ops"}`)
		c.expect("joined")
	}
	a.waitSubscribed(3)
	b.waitSubscribed(3)

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for a.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("router still ready with NATS down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	alice.send(`{"type":"message","room":"ops","data":"lost?","id":"m1"}`)
	if m := alice.expect("error"); m["code"] != "unavailable" || m["id"] != "m1" {
		t.Fatalf("while NATS is down: %v, want error unavailable", m)
	}

	startNATS(t, p)
	deadline = time.Now().Add(10 * time.Second)
	for !a.router.Ready() || !b.router.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("not reconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.bp.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// Both instances lost NATS: each tells its clients that messages may
	// be missing.
	alice.expect("gap")
	bob.expect("gap")
	alice.send(`{"type":"message","room":"ops","data":"back","id":"m2"}`)
	alice.expect("ack")
	if m := bob.expect("message"); m["data"] != "back" {
		t.Fatalf("after recovery %v", m)
	}
	if a.bp.Stats().Reconnects == 0 {
		t.Fatal("no reconnect counted")
	}
}

func TestEmbeddedCluster(t *testing.T) {
	s1, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", ServerName: "one"})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Shutdown()
	route := fmt.Sprintf("nats-route://%s", s1.ClusterAddr().String())
	s2, err := StartEmbedded(EmbeddedOptions{Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", Routes: []string{route}, ServerName: "two"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for s1.NumRoutes() == 0 || s2.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("embedded servers did not form a cluster")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := startInstance(t, "a", Options{Server: s1})
	b := startInstance(t, "b", Options{Server: s2})
	alice, bob := a.dial("alice"), b.dial("bob")
	for _, c := range []*client{alice, bob} {
		c.send(`{"type":"join","room":"lobby"}`)
		c.expect("joined")
	}
	a.waitSubscribed(3)
	b.waitSubscribed(3)
	// Interest crosses the route asynchronously: wait until each server
	// knows both instances' subscriptions to the room (its own client's
	// and the other server's, over the route), instead of probing with
	// messages and read deadlines (which poison a gorilla connection).
	for _, s := range []*server.Server{s1, s2} {
		deadline := time.Now().Add(10 * time.Second)
		for s.GlobalAccount().Interest("gw.room.lobby") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("server %s: interest in gw.room.lobby %d, want 2 (local and over the route)", s.Name(), s.GlobalAccount().Interest("gw.room.lobby"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := 0; i < 20; i++ {
		alice.send(fmt.Sprintf(`{"type":"message","room":"lobby","data":%d,"id":"m%d"}`, i, i))
		alice.expect("ack")
		if m := bob.expect("message"); m["data"] != float64(i) {
			t.Fatalf("across the cluster: %v, want data %d", m, i)
		}
	}
	bob.quiet()
}
