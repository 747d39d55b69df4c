// Command rpc-service is a complete service behind wsgate: it answers the
// client request {"type":"rpc","method":"orders.get","data":{"id":7},"id":"r1"}
// (PROTOCOL.md section 10) using nothing but nats.go. docs/services.md shows
// it whole, and a test runs it against a real gateway.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
)

type order struct {
	ID     int    `json:"id"`
	Status string `json:"status"`
	Owner  string `json:"owner"`
}

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server: the gateway's -nats-listen, or your cluster")
	prefix := flag.String("prefix", "gw", "the gateways' -nats-prefix")
	flag.Parse()

	orders := map[int]order{7: {ID: 7, Status: "shipped", Owner: "alice"}}

	nc, err := nats.Connect(*url, nats.Name("orders-service"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatalf("orders-service: connect %s: %v", *url, err)
	}
	// A queue group: run as many copies as you like; each request goes to one.
	_, err = nc.QueueSubscribe(*prefix+".rpc.orders.get", "orders", func(m *nats.Msg) {
		user := m.Header.Get("Wsgate-User") // from the gateway's verified token, not the client
		var req struct {
			ID int `json:"id"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			fail(m, "bad_request", `want {"id": number}`)
			return
		}
		o, ok := orders[req.ID]
		if !ok || o.Owner != user {
			fail(m, "not_found", "no such order")
			return
		}
		body, _ := json.Marshal(o)
		_ = m.Respond(body) // the client gets {"type":"rpc:result","id":...,"data":<body>}
	})
	if err != nil {
		log.Fatalf("orders-service: subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil { // the subscription is on the server from here on
		log.Fatalf("orders-service: flush: %v", err)
	}
	log.Printf("orders-service: answering %s.rpc.orders.get on %s", *prefix, nc.ConnectedUrl())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = nc.Drain() // answer the requests in hand, then close
}

// fail answers with an error: the client gets
// {"type":"error","code":"service_error","reason":code,"message":message,"id":...}.
func fail(m *nats.Msg, code, message string) {
	r := nats.NewMsg(m.Reply)
	r.Header.Set("Wsgate-Error", code)
	r.Data = []byte(message)
	_ = m.RespondMsg(r)
}
