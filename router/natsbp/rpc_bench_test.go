package natsbp

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/router"
)

// The rpc benchmarks compare one request/reply round trip through the
// gateway (WebSocket client -> gateway -> NATS -> trivial responder and
// back) with the same request made directly with nats.go from the same
// process, against the same NATS server and responder. Sequential: one
// request in flight at a time, so each op is one round trip's latency.
//
//	go test ./router/natsbp -run '^$' -bench 'RPCRoundTrip' -benchtime 2000x

// startEchoResponder answers gw.rpc.bench.echo with the request body.
func startEchoResponder(b *testing.B, url string) {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	if _, err := nc.Subscribe("gw.rpc.bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRPCRoundTripGateway(b *testing.B) {
	ns := startNATS(b, 0)
	startEchoResponder(b, ns.ClientURL())
	in := startInstanceWith(b, "bench", Options{URLs: []string{ns.ClientURL()}}, 1, func(o *router.Options) {
		o.RateMsgs = -1 // the benchmark sends more than the per-connection rate limit
	})
	tok, err := auth.MintHS256(secret, auth.Claims{Sub: "bench"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+in.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := conn.ReadMessage(); err != nil { // auth:ok
		b.Fatal(err)
	}
	req := []byte(`{"type":"rpc","method":"bench.echo","id":"b","data":{"n":1}}`)
	b.ResetTimer()
	for range b.N {
		if err := conn.WriteMessage(websocket.TextMessage, req); err != nil {
			b.Fatal(err)
		}
		_, msg, err := conn.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if len(msg) < 20 || string(msg[:21]) != `{"type":"rpc:result",` {
			b.Fatalf("reply %s", msg)
		}
	}
}

func BenchmarkRPCRoundTripDirectNATS(b *testing.B) {
	ns := startNATS(b, 0)
	startEchoResponder(b, ns.ClientURL())
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	body := []byte(`{"n":1}`)
	b.ResetTimer()
	for range b.N {
		if _, err := nc.Request("gw.rpc.bench.echo", body, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
