package natsbp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/router"
)

// Regression tests for the settle rounds (router/settle.go, sync.go): a
// user switching connections make-before-break lost acked messages, with
// every drop and gap counter at 0.

// TestReplyMeansSubscribedOnServer: auth:ok and joined promise that
// messages from other instances reach the connection from then on, so the
// NATS server must already have the instance's subscription when the
// client reads them. Before the fix the router answered at once and the
// interest goroutine subscribed later: a client that then closed its old
// connection missed what the server processed in between.
func TestReplyMeansSubscribedOnServer(t *testing.T) {
	ns := startNATS(t, 0)
	in := startInstanceWith(t, "b", Options{URLs: []string{ns.ClientURL()}}, 2, noRateLimit)
	acc := ns.GlobalAccount()
	const users = 40
	for i := range users {
		user := fmt.Sprintf("settle-u%d", i)
		c := in.dial(user) // returns once auth:ok was read
		if n := acc.Interest("gw.user." + user); n != 1 {
			t.Fatalf("%s: auth:ok read while the server has %d subscriptions on gw.user.%s, want 1", user, n, user)
		}
		room := fmt.Sprintf("settle-r%d", i)
		c.send(`{"type":"join","room":"` + room + `"}`)
		c.expect("joined")
		if n := acc.Interest("gw.room." + room); n != 1 {
			t.Fatalf("%s: joined read while the server has %d subscriptions on gw.room.%s, want 1", user, n, room)
		}
	}
}

// TestCloseAnswerWaitsForInFlightDelivery: a message for the user that the
// NATS server processed before the client's close frame, and that is still
// inside the instance (here: held in the receiver by a gate), reaches the
// connection before the answer to its close frame. Before the fix the
// loop answered the close and removed the connection first, and the
// message found nobody.
func TestCloseAnswerWaitsForInFlightDelivery(t *testing.T) {
	ns := startNATS(t, 0)
	var gate *gatedBackplane
	a := startFlowGW(t, "a", Options{URLs: []string{ns.ClientURL()}}, engine.Options{Loops: 2},
		func(b *Backplane) router.Backplane { gate = &gatedBackplane{Backplane: b}; return gate })
	b := startInstanceWith(t, "b", Options{URLs: []string{ns.ClientURL()}}, 2, noRateLimit)
	acc := ns.GlobalAccount()

	tok, err := auth.MintHS256(secret, auth.Claims{Sub: "mover"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old, _, err := websocket.DefaultDialer.Dial("ws://"+a.eng.Addr()+"/ws?token="+tok, http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	frames := make(chan string, 16)
	go func() {
		defer close(frames)
		for {
			_, msg, err := old.ReadMessage()
			if err != nil {
				frames <- "end: " + err.Error()
				return
			}
			frames <- string(msg)
		}
	}()
	if f := <-frames; !strings.Contains(f, "auth:ok") {
		t.Fatalf("first frame %s, want auth:ok", f)
	}
	waitUntil(t, "a's subscription to gw.user.mover on the server", func() bool { return acc.Interest("gw.user.mover") == 1 })

	// The message reaches a and waits in its receiver.
	gate.close()
	sender := b.dialBG("sender")
	seen := gate.seen.Load()
	sender.send(`{"type":"send","to":"mover","data":"in flight","id":"m1"}`)
	if ack := sender.expect("ack"); ack["id"] != "m1" {
		t.Fatalf("ack %v", ack)
	}
	waitUntil(t, "the message in a's receiver", func() bool { return gate.seen.Load() > seen })

	// The client closes; the answer must not overtake the message.
	if err := old.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "switching"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	early := ""
	select {
	case early = <-frames: // the old code answered here, without the message
	case <-time.After(300 * time.Millisecond):
	}
	gate.open()
	got := []string{}
	if early != "" {
		got = append(got, early)
	}
	for f := range frames {
		got = append(got, f)
	}
	if len(got) != 2 || !strings.Contains(got[0], `"in flight"`) || !strings.Contains(got[1], "1000") {
		t.Fatalf("after the close frame the old connection got %q, want the message and then close 1000", got)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got[0]), &m); err != nil || m["type"] != "message" || m["to"] != "mover" {
		t.Fatalf("delivery %s (%v)", got[0], err)
	}
}
