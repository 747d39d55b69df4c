// Command nbio is a reference WebSocket server on github.com/lesismal/nbio
// (nbhttp + nbhttp/websocket) in its default non-blocking mode.
//
//	nbio -addr 127.0.0.1:9002 -mode echo|broadcast -pollers 2
//
// echo: every text/binary message is sent back unchanged.
// broadcast: every message is sent unchanged to every OTHER open connection;
// the frame is encoded once and the same bytes are written to each socket.
package main

import (
	"encoding/binary"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

type hub struct {
	mu    sync.RWMutex
	conns map[*websocket.Conn]struct{}
}

// frameOf encodes an unmasked server frame once.
func frameOf(mt websocket.MessageType, p []byte) []byte {
	n := len(p)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n < 65536:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | byte(mt)
	return append(b, p...)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "listen address")
	mode := flag.String("mode", "echo", "echo or broadcast")
	pollers := flag.Int("pollers", 2, "nbio poller goroutines")
	flag.Parse()
	if *mode != "echo" && *mode != "broadcast" {
		log.Fatalf("unknown -mode %q", *mode)
	}
	logging.SetLevel(logging.LevelError)
	h := &hub{conns: map[*websocket.Conn]struct{}{}}

	up := websocket.NewUpgrader()
	up.KeepaliveTime = 0 // no idle read deadline (idle-density runs hold connections for minutes)
	up.CheckOrigin = func(*http.Request) bool { return true }
	if *mode == "echo" {
		up.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			_ = c.WriteMessage(mt, data)
		})
	} else {
		up.OnOpen(func(c *websocket.Conn) {
			h.mu.Lock()
			h.conns[c] = struct{}{}
			h.mu.Unlock()
		})
		up.OnClose(func(c *websocket.Conn, err error) {
			h.mu.Lock()
			delete(h.conns, c)
			h.mu.Unlock()
		})
		up.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			fr := frameOf(mt, data)
			h.mu.RLock()
			for o := range h.conns {
				if o != c {
					_, _ = o.Conn.Write(fr) // nbio.Conn.Write copies what it cannot send now
				}
			}
			h.mu.RUnlock()
		})
	}
	mux := &http.ServeMux{}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if _, err := up.Upgrade(w, r, nil); err != nil {
			return
		}
	})
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{*addr},
		Handler:                 mux,
		NPoller:                 *pollers,
		ReleaseWebsocketPayload: true,
	})
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	log.Printf("nbio peer mode=%s pollers=%d listening on %s", *mode, *pollers, *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	engine.Stop()
}
