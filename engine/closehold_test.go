package engine

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// holdingHandler holds back the answer to every close frame (CloseHolder)
// and hands the connection to the test.
type holdingHandler struct {
	BaseHandler
	held     chan *Conn
	messages atomic.Int32
}

func (h *holdingHandler) HoldClose(c *Conn) bool {
	h.held <- c
	return true
}

func (h *holdingHandler) OnMessage(*Conn, ws.OpCode, []byte) { h.messages.Add(1) }

// TestCloseHolderWritesBeforeAnswer: while the handler holds back the
// answer to a client's close frame, writes still reach the client, data
// the client sends after its close frame is discarded, and AnswerClose
// sends the close frame after what was written (router/settle.go relies
// on this to deliver messages already on their way to a closing client).
func TestCloseHolderWritesBeforeAnswer(t *testing.T) {
	h := &holdingHandler{held: make(chan *Conn, 1)}
	e := startEngine(t, Options{}, h)
	c, _ := dialUpgraded(t, e)
	c.writeFrame(0x8, closePayload(1000, "bye"))
	c.writeFrame(0x1, []byte("after my close")) // must not reach the handler
	var conn *Conn
	select {
	case conn = <-h.held:
	case <-time.After(5 * time.Second):
		t.Fatal("HoldClose not called within 5s")
	}
	done := make(chan struct{})
	if !conn.Loop().Post(Task{Fn: func(*Loop, any) {
		conn.WriteMessage(ws.OpText, []byte("still on its way"))
		conn.AnswerClose()
		close(done)
	}}) {
		t.Fatal("loop not running")
	}
	<-done
	c.expectMessage(0x1, []byte("still on its way"))
	c.expectClose(t, 1000)
	c.expectEOF(t, 5*time.Second)
	if n := h.messages.Load(); n != 0 {
		t.Fatalf("%d data messages after the close frame reached the handler, want 0", n)
	}
}
