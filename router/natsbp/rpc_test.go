package natsbp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
	clientwire "github.com/wsgate/wsgate/wire"
)

// services are two real responders, written with nats.go, in one queue
// group on gw.rpc.svc.>, each on its own NATS connection. Methods:
//
//	svc.echo     {"got": data, "user", "conn", "instance": the headers, "by": responder}
//	svc.fail     Wsgate-Error: not_found, body "no such order"
//	svc.badcode  Wsgate-Error: "Not A Code!"
//	svc.badjson  body `not json{`
//	svc.empty    empty body
//	svc.big      a JSON string of 100 KiB
//	svc.hold     answers like echo once release is closed
//	svc.silent   never answers
type services struct {
	release  chan struct{}
	held     atomic.Int64 // svc.hold requests received
	answered [2]atomic.Int64
	once     sync.Once
}

func startServices(t *testing.T, url string) *services {
	t.Helper()
	s := &services{release: make(chan struct{})}
	t.Cleanup(s.releaseAll)
	for i := range 2 {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatalf("service connect: %v", err)
		}
		t.Cleanup(nc.Close)
		if _, err := nc.QueueSubscribe("gw.rpc.svc.>", "svc", func(m *nats.Msg) { s.serve(nc, i, m) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *services) releaseAll() { s.once.Do(func() { close(s.release) }) }

func (s *services) serve(nc *nats.Conn, i int, m *nats.Msg) {
	reply := &nats.Msg{Subject: m.Reply}
	switch m.Subject {
	case "gw.rpc.svc.silent":
		return
	case "gw.rpc.svc.hold":
		s.held.Add(1)
		go func() {
			<-s.release
			reply.Data = s.echo(i, m)
			_ = nc.PublishMsg(reply)
		}()
		return
	case "gw.rpc.svc.fail":
		reply.Header = nats.Header{"Wsgate-Error": []string{"not_found"}}
		reply.Data = []byte("no such order")
	case "gw.rpc.svc.badcode":
		reply.Header = nats.Header{"Wsgate-Error": []string{"Not A Code!"}}
		reply.Data = []byte("oops")
	case "gw.rpc.svc.badjson":
		reply.Data = []byte("not json{")
	case "gw.rpc.svc.empty":
	case "gw.rpc.svc.big":
		reply.Data = []byte(`"` + strings.Repeat("x", 100<<10) + `"`)
	default:
		reply.Data = s.echo(i, m)
	}
	s.answered[i].Add(1)
	_ = nc.PublishMsg(reply)
}

func (s *services) echo(i int, m *nats.Msg) []byte {
	b, _ := json.Marshal(map[string]any{
		"got": json.RawMessage(m.Data), "by": i,
		"user": m.Header.Get("Wsgate-User"), "conn": m.Header.Get("Wsgate-Conn"), "instance": m.Header.Get("Wsgate-Instance"),
	})
	return b
}

// dialRPC connects a client of codec with the given claims (Sub set here).
func dialRPC(t *testing.T, in *instance, user string, codec clientwire.Codec, claims auth.Claims) (*encClient, map[string]any) {
	t.Helper()
	claims.Sub = user
	tok, err := auth.MintHS256(secret, claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{Subprotocols: []string{codec.Subprotocol()}}
	conn, _, err := d.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		t.Fatalf("dial %s: %v", codec, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &encClient{t: t, user: user, codec: codec, conn: conn}
	return c, c.expect("auth:ok")
}

// expectError reads the next message and checks it is error code for id.
func expectError(t *testing.T, c *encClient, code, id string) map[string]any {
	t.Helper()
	m := c.read()
	if m["type"] != "error" || m["code"] != code || m["id"] != id {
		t.Fatalf("%s: got %v, want error %s for id %s", c.codec, m, code, id)
	}
	return m
}

func rpcInFlight(t *testing.T, in *instance) router.RPCStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snaps, err := in.router.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st router.RPCStats
	for i := range snaps {
		st.Add(&snaps[i].RPC)
	}
	return st
}

// TestRPCAnswers walks every answer row of PROTOCOL.md section 10's rpc
// with a client of each encoding against real responders.
func TestRPCAnswers(t *testing.T) {
	ns := startNATS(t, 0)
	svc := startServices(t, ns.ClientURL())
	in := startInstanceWith(t, "rpc-a", Options{URLs: []string{ns.ClientURL()}}, 1, nil)
	codecs := []clientwire.Codec{clientwire.CodecJSON, clientwire.CodecMsgpack, clientwire.CodecCBOR, clientwire.CodecProtobuf}
	for _, codec := range codecs {
		t.Run(codec.String(), func(t *testing.T) {
			c, ok := dialRPC(t, in, "alice", codec, auth.Claims{})

			// ok: data crosses as JSON, headers name the caller; the
			// queue group shares the work.
			for i := range 40 {
				id := fmt.Sprintf("e%d", i)
				c.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": id, "data": map[string]any{"order": 42.5, "tags": []any{"a", true, nil}}})
				m := c.read()
				if m["type"] != "rpc:result" || m["id"] != id {
					t.Fatalf("got %v, want rpc:result %s", m, id)
				}
				d := m["data"].(map[string]any)
				got, _ := json.Marshal(d["got"])
				if string(got) != `{"order":42.5,"tags":["a",true,null]}` {
					t.Fatalf("service got %s", got)
				}
				if d["user"] != "alice" || d["conn"] != ok["conn"] || d["instance"] != "rpc-a" {
					t.Fatalf("headers %v, auth:ok %v", d, ok)
				}
			}
			if svc.answered[0].Load() == 0 || svc.answered[1].Load() == 0 {
				t.Fatalf("queue group: answers %d and %d, want both responders used", svc.answered[0].Load(), svc.answered[1].Load())
			}
			// No data: the service gets null.
			c.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": "nodata"})
			if m := c.read(); m["type"] != "rpc:result" || m["data"].(map[string]any)["got"] != nil {
				t.Fatalf("no data: %v", m)
			}

			// service_error: reason from the header, message from the body.
			c.send(map[string]any{"type": "rpc", "method": "svc.fail", "id": "f1", "data": 1})
			if m := expectError(t, c, "service_error", "f1"); m["reason"] != "not_found" || m["message"] != "no such order" {
				t.Fatalf("service error: %v", m)
			}
			// Replies the gateway cannot pass on: service_error bad_reply.
			for _, meth := range []string{"svc.badjson", "svc.badcode"} {
				c.send(map[string]any{"type": "rpc", "method": meth, "id": meth})
				if m := expectError(t, c, "service_error", meth); m["reason"] != "bad_reply" {
					t.Fatalf("%s: %v", meth, m)
				}
			}
			// An empty body is null.
			c.send(map[string]any{"type": "rpc", "method": "svc.empty", "id": "empty"})
			if m := c.read(); m["type"] != "rpc:result" || m["data"] != nil {
				t.Fatalf("empty: %v", m)
			}
			// Larger than -max-message-size (64 KiB): too_large.
			c.send(map[string]any{"type": "rpc", "method": "svc.big", "id": "big"})
			expectError(t, c, "too_large", "big")
			// No responder: unavailable.
			c.send(map[string]any{"type": "rpc", "method": "nobody.home", "id": "n1"})
			expectError(t, c, "unavailable", "n1")

			// Bad requests: no id, bad method names.
			c.send(map[string]any{"type": "rpc", "method": "svc.echo"})
			if m := c.read(); m["type"] != "error" || m["code"] != "bad_request" {
				t.Fatalf("rpc without id: %v", m)
			}
			for i, meth := range []any{"a..b", "", "sp ace", ".x", strings.Repeat("m", 129)} {
				id := fmt.Sprintf("bad%d", i)
				c.send(map[string]any{"type": "rpc", "method": meth, "id": id})
				expectError(t, c, "bad_request", id)
			}
			// A method that is no string (protobuf cannot send one): the
			// decoder stops there, so the id is echoed only when it came
			// first in the map.
			if codec != clientwire.CodecProtobuf {
				c.send(map[string]any{"type": "rpc", "method": 7, "id": "num"})
				if m := c.read(); m["type"] != "error" || m["code"] != "bad_request" {
					t.Fatalf("numeric method: %v", m)
				}
			}
			c.send(map[string]any{"type": "rpc", "id": "nometh"})
			expectError(t, c, "bad_request", "nometh")

			// forbidden: the claim rpc lists the allowed methods.
			lim, _ := dialRPC(t, in, "bob", codec, auth.Claims{RPC: []string{"svc.echo"}})
			lim.send(map[string]any{"type": "rpc", "method": "svc.fail", "id": "x"})
			expectError(t, lim, "forbidden", "x")
			lim.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": "y"})
			if m := lim.read(); m["type"] != "rpc:result" {
				t.Fatalf("allowed method: %v", m)
			}
		})
	}
	st := rpcInFlight(t, in)
	n := uint64(len(codecs))
	if st.InFlight != 0 || st.Outcomes[router.RPCOutcomeOK] != 43*n || st.Outcomes[router.RPCOutcomeServiceError] != n ||
		st.Outcomes[router.RPCOutcomeBadReply] != 3*n || st.Outcomes[router.RPCOutcomeUnavailable] != n || st.Outcomes[router.RPCOutcomeForbidden] != n {
		t.Fatalf("stats %+v", st)
	}
	if st.Latency.Count == 0 {
		t.Fatal("no rpc latency recorded")
	}
}

// TestRPCInFlightLimit: the 17th request in flight on a connection is
// refused with rate_limited; the 16 before it are answered.
func TestRPCInFlightLimit(t *testing.T) {
	for _, codec := range []clientwire.Codec{clientwire.CodecJSON, clientwire.CodecMsgpack} {
		t.Run(codec.String(), func(t *testing.T) {
			ns := startNATS(t, 0)
			svc := startServices(t, ns.ClientURL())
			in := startInstanceWith(t, "rpc-b", Options{URLs: []string{ns.ClientURL()}}, 1, nil)
			c, _ := dialRPC(t, in, "carol", codec, auth.Claims{})
			for i := range 16 {
				c.send(map[string]any{"type": "rpc", "method": "svc.hold", "id": fmt.Sprint("h", i)})
			}
			// Every one of the 16 reached a service and waits there.
			waitFor(t, "16 held requests", func() bool { return svc.held.Load() == 16 })
			c.send(map[string]any{"type": "rpc", "method": "svc.hold", "id": "h16"})
			expectError(t, c, "rate_limited", "h16")
			svc.releaseAll()
			seen := map[string]bool{}
			for range 16 {
				m := c.read()
				if m["type"] != "rpc:result" {
					t.Fatalf("got %v, want rpc:result", m)
				}
				seen[m["id"].(string)] = true
			}
			if len(seen) != 16 || seen["h16"] {
				t.Fatalf("answers for %v", seen)
			}
			if st := rpcInFlight(t, in); st.Outcomes[router.RPCOutcomeRateLimited] != 1 || st.InFlight != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestRPCTimeout: a service that never answers gives error timeout after
// -rpc-timeout; the slot is free again afterwards.
func TestRPCTimeout(t *testing.T) {
	ns := startNATS(t, 0)
	startServices(t, ns.ClientURL())
	in := startInstanceWith(t, "rpc-c", Options{URLs: []string{ns.ClientURL()}}, 1, func(o *router.Options) {
		o.RPCTimeout = 300 * time.Millisecond
		o.RPCMaxInFlight = 1
	})
	for _, codec := range []clientwire.Codec{clientwire.CodecJSON, clientwire.CodecMsgpack} {
		c, _ := dialRPC(t, in, "dave", codec, auth.Claims{})
		start := time.Now()
		c.send(map[string]any{"type": "rpc", "method": "svc.silent", "id": "s1"})
		m := expectError(t, c, "timeout", "s1")
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("%s: timeout after %v, before -rpc-timeout", codec, el)
		}
		if !strings.Contains(m["message"].(string), "svc.silent") {
			t.Fatalf("message %v", m)
		}
		// With a limit of one in flight, the next request proves the slot
		// was freed.
		c.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": "s2"})
		if m := c.read(); m["type"] != "rpc:result" || m["id"] != "s2" {
			t.Fatalf("%s: after a timeout: %v", codec, m)
		}
	}
	if st := rpcInFlight(t, in); st.Outcomes[router.RPCOutcomeTimeout] != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRPCUnavailable: NATS down, and a gateway without a backplane, answer
// error unavailable.
func TestRPCUnavailable(t *testing.T) {
	ns := startNATS(t, 0)
	in := startInstanceWith(t, "rpc-d", Options{URLs: []string{ns.ClientURL()}}, 1, nil)
	c, _ := dialRPC(t, in, "erin", clientwire.CodecMsgpack, auth.Claims{})
	ns.Shutdown()
	waitFor(t, "backplane down", func() bool { return !in.bp.Ready() })
	c.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": "d1"})
	expectError(t, c, "unavailable", "d1")

	r, err := router.New(router.Options{InstanceID: "alone", Auth: auth.Config{Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Addr: "127.0.0.1:0", Loops: 1}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(e); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	alone := &instance{t: t, eng: e, router: r}
	t.Cleanup(alone.stop)
	c2, _ := dialRPC(t, alone, "erin", clientwire.CodecJSON, auth.Claims{})
	c2.send(map[string]any{"type": "rpc", "method": "svc.echo", "id": "d2"})
	expectError(t, c2, "unavailable", "d2")
}

// TestRPCSlowServiceKeepsLoopResponsive: requests waiting on a slow
// service hold no event loop: another client on the same (only) loop gets
// every pong while they are all still pending.
func TestRPCSlowServiceKeepsLoopResponsive(t *testing.T) {
	ns := startNATS(t, 0)
	svc := startServices(t, ns.ClientURL())
	in := startInstanceWith(t, "rpc-e", Options{URLs: []string{ns.ClientURL()}}, 1, func(o *router.Options) {
		o.RPCMaxInFlight = 64
	})
	const callers, each = 4, 16
	cs := make([]*encClient, callers)
	for i := range cs {
		cs[i], _ = dialRPC(t, in, fmt.Sprint("caller", i), clientwire.CodecJSON, auth.Claims{})
		for j := range each {
			cs[i].send(map[string]any{"type": "rpc", "method": "svc.hold", "id": fmt.Sprint(j)})
		}
	}
	waitFor(t, "held requests", func() bool { return svc.held.Load() == callers*each })
	pinger, _ := dialRPC(t, in, "pinger", clientwire.CodecMsgpack, auth.Claims{})
	for i := range 50 {
		id := fmt.Sprint("p", i)
		pinger.send(map[string]any{"type": "ping", "id": id})
		if m := pinger.read(); m["type"] != "pong" || m["id"] != id {
			t.Fatalf("ping %d: %v", i, m)
		}
	}
	// Every rpc was still pending while the pings went round.
	if st := rpcInFlight(t, in); st.InFlight != callers*each {
		t.Fatalf("in flight %d after the pings, want %d", st.InFlight, callers*each)
	}
	svc.releaseAll()
	for _, c := range cs {
		for range each {
			if m := c.read(); m["type"] != "rpc:result" {
				t.Fatalf("got %v", m)
			}
		}
	}
}

// TestRPCCloseDropsRequests: a connection closed with requests in flight
// leaves nothing in the loop's table; the late replies are dropped.
func TestRPCCloseDropsRequests(t *testing.T) {
	ns := startNATS(t, 0)
	svc := startServices(t, ns.ClientURL())
	// A timeout far beyond the test's waits: only the close can empty the table.
	in := startInstanceWith(t, "rpc-f", Options{URLs: []string{ns.ClientURL()}}, 2, func(o *router.Options) { o.RPCTimeout = time.Minute })
	c, _ := dialRPC(t, in, "frank", clientwire.CodecJSON, auth.Claims{})
	for i := range 10 {
		c.send(map[string]any{"type": "rpc", "method": "svc.hold", "id": fmt.Sprint(i)})
	}
	waitFor(t, "10 held requests", func() bool { return svc.held.Load() == 10 })
	if st := rpcInFlight(t, in); st.InFlight != 10 {
		t.Fatalf("in flight %d, want 10", st.InFlight)
	}
	_ = c.conn.Close()
	waitFor(t, "the table to empty", func() bool { return rpcInFlight(t, in).InFlight == 0 })
	svc.releaseAll()
	waitFor(t, "10 late replies", func() bool { return rpcInFlight(t, in).Late == 10 })
	if st := rpcInFlight(t, in); st.Outcomes[router.RPCOutcomeOK] != 0 {
		t.Fatalf("answers to a closed connection: %+v", st)
	}
}
