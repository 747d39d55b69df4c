// Command service is a complete service behind wsgate, using nothing but
// nats.go (PROTOCOL.md sections 10 and 11). It
//   - answers the client request {"type":"rpc","method":"orders.get","data":{"id":7}};
//   - decides who may join the rooms vip.* (the gateway's -hook-join 'vip.*'):
//     users whose name starts with "vip-";
//   - logs the gateway's lifecycle events (-events) and counts joins per room;
//   - disconnects, through the control API, a user refused a vip room three
//     times, with reconnect false (close 4502).
//
// docs/services.md shows it whole, and a test runs it against a real gateway.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

type order struct {
	ID     int    `json:"id"`
	Status string `json:"status"`
	Owner  string `json:"owner"`
}

// maxDenied is how many refused vip joins a user gets before being disconnected.
const maxDenied = 3

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server: the gateway's -nats-listen, or your cluster")
	prefix := flag.String("prefix", "gw", "the gateways' -nats-prefix")
	flag.Parse()

	orders := map[int]order{7: {ID: 7, Status: "shipped", Owner: "alice"}}
	// Each subscription's callback runs on a goroutine of its own: share under a lock.
	var mu sync.Mutex
	denied := map[string]int{} // refused vip joins per user
	joins := map[string]int{}  // joins per room, from the events

	nc, err := nats.Connect(*url, nats.Name("example-service"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatalf("service: connect %s: %v", *url, err)
	}
	// A queue group: run as many copies as you like; each request goes to one.
	subscribe := func(subject, queue string, handle nats.MsgHandler) {
		if _, err := nc.QueueSubscribe(*prefix+"."+subject, queue, handle); err != nil {
			log.Fatalf("service: subscribe %s: %v", subject, err)
		}
	}

	// 1. Answer the rpc orders.get.
	subscribe("rpc.orders.get", "orders", func(m *nats.Msg) {
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

	// 2. Authorize joins of the rooms the gateway asks about (-hook-join).
	subscribe("hook.join", "auth", func(m *nats.Msg) {
		var req struct{ User, Conn, Room string }
		if err := json.Unmarshal(m.Data, &req); err != nil {
			_ = m.Respond([]byte(`{"allow":false,"reason":"bad hook request"}`))
			return
		}
		if strings.HasPrefix(req.User, "vip-") || !strings.HasPrefix(req.Room, "vip.") {
			_ = m.Respond([]byte(`{"allow":true}`)) // the client gets joined
			return
		}
		_ = m.Respond([]byte(`{"allow":false,"reason":"vip rooms are for vip members"}`)) // error forbidden
		mu.Lock()
		denied[req.User]++
		strikes := denied[req.User]
		mu.Unlock()
		if strikes == maxDenied {
			// Not on this callback: the next hook request should not wait for it.
			go disconnect(nc, *prefix, req.User, "too many attempts to enter vip rooms")
		}
	})

	// 3. React to the lifecycle events (-events): one copy of the service logs them.
	subscribe("event.>", "log", func(m *nats.Msg) {
		var ev struct {
			User, Conn, Room, Instance string
			Code                       int
		}
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			log.Printf("service: event %s: %v", m.Subject, err)
			return
		}
		kind := strings.TrimPrefix(m.Subject, *prefix+".event.")
		switch {
		case kind == "connect":
			log.Printf("event: %s connected (conn %s on %s)", ev.User, ev.Conn, ev.Instance)
		case kind == "disconnect":
			log.Printf("event: %s disconnected (conn %s, code %d)", ev.User, ev.Conn, ev.Code)
		case strings.HasPrefix(kind, "join."):
			mu.Lock()
			joins[ev.Room]++
			n := joins[ev.Room]
			mu.Unlock()
			log.Printf("event: %s joined %s (%d joins so far)", ev.User, ev.Room, n)
		case strings.HasPrefix(kind, "leave."):
			log.Printf("event: %s left %s", ev.User, ev.Room)
		}
	})

	if err := nc.Flush(); err != nil { // the subscriptions are on the server from here on
		log.Fatalf("service: flush: %v", err)
	}
	log.Printf("service: ready on %s (prefix %s)", nc.ConnectedUrl(), *prefix)

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

// disconnect closes every connection of user on every gateway instance
// (control API, gw.ctl.disconnect); reconnect false is close 4502.
func disconnect(nc *nats.Conn, prefix, user, reason string) {
	body, _ := json.Marshal(map[string]any{"user": user, "reconnect": false, "reason": reason})
	msg, err := nc.Request(prefix+".ctl.disconnect", body, 5*time.Second)
	if err != nil {
		log.Printf("service: disconnect %s: %v", user, err) // nats.ErrNoResponders: no gateway is up
		return
	}
	if status := msg.Header.Get("Wsgate-Error"); status != "" {
		log.Printf("service: disconnect %s: status %s: %s", user, status, msg.Data)
		return
	}
	var n struct {
		Connections int `json:"connections"`
	}
	_ = json.Unmarshal(msg.Data, &n)
	log.Printf("service: disconnected %s (%d connections): %s", user, n.Connections, reason)
}
