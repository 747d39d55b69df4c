package router

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// TestIntegrationCloseAnswerAfterOtherLoopsRouted: another loop that
// routed a message to a user before the user's close frame arrived (it
// loaded the address's loop mask, its post is on the way) must still reach
// the closing connection before the close answer (settle.go). Here loop 1
// is held inside a task that routes to the user once released; the close
// frame is read on loop 0 meanwhile. Before the fix loop 0 answered the
// close and dropped the user at once, and the message found nobody.
func TestIntegrationCloseAnswerAfterOtherLoopsRouted(t *testing.T) {
	g := startGateway(t, engine.Options{Loops: 2}, Options{RateMsgs: -1})
	// mover on loop 0, and someone on loop 1 (a loop runs tasks once it
	// has had a connection).
	onLoop := func(user string, loop int) *tclient {
		for {
			c := g.connect(dialOpts{query: token(t, auth.Claims{Sub: user})})
			if connLoop(t, c.expect("auth:ok")) == loop {
				return c
			}
			c.close()
		}
	}
	mover := onLoop("mover", 0)
	onLoop("other", 1)

	// Loop 1 routes a message for mover once released: a sender's
	// OnMessage that is preempted between its mask load and its post.
	inside, release := make(chan struct{}), make(chan struct{})
	loop1 := g.eng.Loops()[1]
	if !loop1.Post(engine.Task{Fn: func(l *engine.Loop, _ any) {
		close(inside)
		<-release
		m := newOutMsg()
		m.kind, m.dataCodec, m.ts = KindUser, wire.CodecJSON, time.Now().UnixMilli()
		m.name = append(m.name, "mover"...)
		m.from = append(m.from, "sender"...)
		m.data = append(m.data, `"routed before the close"`...)
		m.id = append(m.id, "late-1"...)
		g.router.route(l.Data().(*shard), m)
	}}) {
		t.Fatal("loop 1 not running")
	}
	<-inside
	defer close(release)

	if err := mover.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "switching"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "loop 0 read the close frame", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		per, err := g.eng.Stats(ctx) // fresh from loop 0; loop 1 is busy
		return err == nil && per[0].ClosesReceived > 0
	})
	release <- struct{}{}

	got := mover.expect("message")
	if got["data"] != "routed before the close" {
		t.Fatalf("got %v", got)
	}
	mover.expectClose(websocket.CloseNormalClosure)
}
