// Command gorilla is a reference WebSocket server built the way most Go users
// write one: gorilla/websocket, a reader goroutine per connection plus a
// writer goroutine fed by a buffered channel.
//
//	gorilla -addr 127.0.0.1:9001 -mode echo|broadcast
//
// echo: every text/binary message is sent back unchanged.
// broadcast: every message is sent unchanged to every OTHER open connection,
// encoded once (websocket.PreparedMessage).
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

type client struct {
	c    *websocket.Conn
	send chan *websocket.PreparedMessage
	once sync.Once
	done chan struct{}
}

type hub struct {
	mu      sync.Mutex
	clients atomic.Pointer[[]*client] // copy-on-write snapshot
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	old := h.clients.Load()
	var n []*client
	if old != nil {
		n = make([]*client, len(*old), len(*old)+1)
		copy(n, *old)
	}
	n = append(n, c)
	h.clients.Store(&n)
	h.mu.Unlock()
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	old := *h.clients.Load()
	n := make([]*client, 0, len(old))
	for _, x := range old {
		if x != c {
			n = append(n, x)
		}
	}
	h.clients.Store(&n)
	h.mu.Unlock()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	mode := flag.String("mode", "echo", "echo or broadcast")
	queue := flag.Int("queue", 1024, "per-connection send queue (broadcast); a full queue blocks the publisher")
	flag.Parse()
	if *mode != "echo" && *mode != "broadcast" {
		log.Fatalf("unknown -mode %q", *mode)
	}
	up := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096, CheckOrigin: func(*http.Request) bool { return true }}
	h := &hub{}
	empty := []*client{}
	h.clients.Store(&empty)

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if *mode == "echo" {
			go func() {
				defer c.Close()
				for {
					mt, p, err := c.ReadMessage()
					if err != nil {
						return
					}
					if err := c.WriteMessage(mt, p); err != nil {
						return
					}
				}
			}()
			return
		}
		cl := &client{c: c, send: make(chan *websocket.PreparedMessage, *queue), done: make(chan struct{})}
		h.add(cl)
		go func() { // writer
			defer c.Close()
			for {
				select {
				case pm := <-cl.send:
					if err := c.WritePreparedMessage(pm); err != nil {
						cl.once.Do(func() { close(cl.done) })
						return
					}
				case <-cl.done:
					return
				}
			}
		}()
		go func() { // reader
			defer func() {
				h.remove(cl)
				cl.once.Do(func() { close(cl.done) })
				c.Close()
			}()
			for {
				mt, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				pm, err := websocket.NewPreparedMessage(mt, p)
				if err != nil {
					return
				}
				for _, o := range *h.clients.Load() {
					if o == cl {
						continue
					}
					select {
					case o.send <- pm:
					case <-o.done:
					}
				}
			}
		}()
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("gorilla peer mode=%s listening on %s", *mode, ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
