package engine

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

func TestGorillaEcho(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			e := startEngine(t, Options{Compress: compress}, EchoHandler{})
			d := websocket.Dialer{EnableCompression: compress}
			c, resp, err := d.Dial(wsURL(e), nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			gotExt := resp.Header.Get("Sec-WebSocket-Extensions")
			if compress != (gotExt != "") {
				t.Fatalf("extensions header %q with compress=%v", gotExt, compress)
			}
			msgs := []struct {
				typ  int
				data []byte
			}{
				{typ: websocket.TextMessage, data: []byte("hello")},
				{typ: websocket.BinaryMessage, data: bytes.Repeat([]byte{1, 2, 3}, 1000)},
				{typ: websocket.TextMessage, data: bytes.Repeat([]byte("héllo wörld "), 3000)},
				{typ: websocket.TextMessage, data: []byte{}},
			}
			for i, m := range msgs {
				if err := c.WriteMessage(m.typ, m.data); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				typ, got, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if typ != m.typ || !bytes.Equal(got, m.data) {
					t.Fatalf("message %d: got type %d len %d, want type %d len %d", i, typ, len(got), m.typ, len(m.data))
				}
			}
			if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second)); err != nil {
				t.Fatalf("close: %v", err)
			}
			_, _, err = c.ReadMessage()
			var ce *websocket.CloseError
			if !errorsAs(err, &ce) || ce.Code != 1000 {
				t.Fatalf("after close: %v, want close 1000", err)
			}
		})
	}
}

func TestCoderEcho(t *testing.T) {
	for _, mode := range []coder.CompressionMode{coder.CompressionDisabled, coder.CompressionContextTakeover, coder.CompressionNoContextTakeover} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			e := startEngine(t, Options{Compress: true}, EchoHandler{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := coder.Dial(ctx, wsURL(e), &coder.DialOptions{CompressionMode: mode, HTTPHeader: http.Header{}})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			for i := 0; i < 20; i++ {
				want := bytes.Repeat([]byte(fmt.Sprintf("message %d ", i)), 10*i+1)
				if err := c.Write(ctx, coder.MessageText, want); err != nil {
					t.Fatalf("write: %v", err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if typ != coder.MessageText || !bytes.Equal(got, want) {
					t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(want))
				}
			}
			if err := c.Close(coder.StatusNormalClosure, ""); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}
