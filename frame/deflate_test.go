package frame

import (
	"bytes"
	"compress/flate"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gorilla/websocket"
)

func compressedFrame(fin bool, op ws.OpCode, compressed []byte) []byte {
	b0 := 0x40 | byte(op)
	if fin {
		b0 |= 0x80
	}
	return clientFrame(b0, key1, compressed)
}

func TestDeflateDecode(t *testing.T) {
	long := wordSoup(9000)
	nc := newClientDeflater(false)
	c := nc.compress([]byte(long))
	half := len(c) / 2

	bomb := func() []byte {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, flate.BestCompression)
		fw.Write(make([]byte, 10<<20))
		fw.Flush()
		return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	}()
	t.Logf("bomb: %d compressed bytes for 10 MiB", len(bomb))

	tk := newClientDeflater(true)
	tk1, tk2, tk3 := tk.compress([]byte(long)), tk.compress([]byte(long)), tk.compress([]byte("x"+long))
	if len(tk2) >= len(tk1)/4 {
		t.Fatalf("context takeover did not shrink the 2nd message: %d vs %d", len(tk2), len(tk1))
	}

	tests := []struct {
		name      string
		in        []byte
		noContext bool
		limits    *Limits
		want      []event
		code      ws.StatusCode
		err       error
	}{
		{name: "single frame", in: compressedFrame(true, ws.OpText, c), want: []event{{Op: ws.OpText, Data: long}}},
		{name: "binary", in: compressedFrame(true, ws.OpBinary, c), want: []event{{Op: ws.OpBinary, Data: long}}},
		{name: "fragmented", in: cat(compressedFrame(false, ws.OpText, c[:half]), ctrl(ws.OpPing, "p"), cont(true, string(c[half:]))),
			want: []event{{Op: ws.OpPing, Data: "p"}, {Op: ws.OpText, Data: long}}},
		{name: "empty compressed", in: compressedFrame(true, ws.OpText, nil), want: []event{{Op: ws.OpText}}},
		{name: "empty block 0x00", in: compressedFrame(true, ws.OpText, []byte{0}), want: []event{{Op: ws.OpText}}},
		{name: "uncompressed message with deflate on", in: text(true, "plain"), want: []event{{Op: ws.OpText, Data: "plain"}}},
		{name: "no context takeover", noContext: true, in: cat(compressedFrame(true, ws.OpText, c), compressedFrame(true, ws.OpText, c)),
			want: []event{{Op: ws.OpText, Data: long}, {Op: ws.OpText, Data: long}}},
		{name: "context takeover", in: cat(compressedFrame(true, ws.OpText, tk1), text(true, "between"), compressedFrame(true, ws.OpText, tk2), compressedFrame(true, ws.OpText, tk3)),
			want: []event{{Op: ws.OpText, Data: long}, {Op: ws.OpText, Data: "between"}, {Op: ws.OpText, Data: long}, {Op: ws.OpText, Data: "x" + long}}},
		{name: "takeover stream without window", noContext: true, in: cat(compressedFrame(true, ws.OpText, tk1), compressedFrame(true, ws.OpText, tk2)),
			want: []event{{Op: ws.OpText, Data: long}}, code: 1007, err: ErrInflate},
		{name: "bomb", in: compressedFrame(true, ws.OpBinary, bomb), limits: &Limits{MaxMessageSize: 1 << 20}, code: 1009, err: ErrTooLarge},
		{name: "inflated just over max", in: compressedFrame(true, ws.OpText, c), limits: &Limits{MaxMessageSize: len(long) - 1}, code: 1009, err: ErrTooLarge},
		{name: "inflated exactly max", in: compressedFrame(true, ws.OpText, c), limits: &Limits{MaxMessageSize: len(long)}, want: []event{{Op: ws.OpText, Data: long}}},
		{name: "compressed too large", in: compressedFrame(true, ws.OpText, c), limits: &Limits{MaxMessageSize: len(c) - 1}, code: 1009, err: ErrTooLarge},
		{name: "invalid utf8 inflated", in: compressedFrame(true, ws.OpText, nc.compress([]byte("ok\xed\xa0\x80"))), code: 1007, err: ErrInvalidUTF8},
		{name: "truncated utf8 inflated", in: compressedFrame(true, ws.OpText, nc.compress([]byte("ok\xe1\xbd"))), code: 1007, err: ErrInvalidUTF8},
		{name: "invalid utf8 binary ok", in: compressedFrame(true, ws.OpBinary, nc.compress([]byte("\xff"))), want: []event{{Op: ws.OpBinary, Data: "\xff"}}},
		{name: "corrupt", in: compressedFrame(true, ws.OpText, []byte{0xff, 0xff, 0xff}), code: 1007, err: ErrInflate},
		{name: "rsv1 on continuation", in: cat(compressedFrame(false, ws.OpText, c[:half]), clientFrame(0xc0, key1, c[half:])), code: 1002, err: ErrReservedBits},
		{name: "rsv1 on close", in: clientFrame(0xc8, key1, nil), code: 1002, err: ErrReservedBits},
	}
	for _, tt := range tests {
		l := tt.limits
		if l == nil {
			l = testLimits
		}
		want := result{Events: tt.want, Code: tt.code, Err: tt.err}
		for name, split := range splits(3) {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				got := feed(t, l, &deflateOpt{noContext: tt.noContext}, tt.in, split)
				if !sameResult(got, want) {
					t.Fatalf("got %v code %d err %v\nwant %v code %d err %v", got.Events, got.Code, got.Err, want.Events, want.Code, want.Err)
				}
			})
		}
	}
}

// TestDeflateEncodeRoundTrip decodes what the server encoders produce (after
// masking, as if a client had sent it).
func TestDeflateEncodeRoundTrip(t *testing.T) {
	payloads := []string{"", "a", "Hello", strings.Repeat("abc", 100), strings.Repeat("x", 70000), string(bin64k)}
	for _, p := range payloads {
		s := NewShared(ws.OpBinary, []byte(p))
		d1, err := s.Deflated()
		if err != nil {
			t.Fatal(err)
		}
		d2, _ := s.DeflatedHuffman()
		a, _ := AppendDeflated([]byte("prefix"), ws.OpBinary, []byte(p))
		if !bytes.HasPrefix(a, []byte("prefix")) || !bytes.Equal(a[6:], d1) {
			t.Fatalf("AppendDeflated differs from Shared.Deflated for %d bytes", len(p))
		}
		h, _ := AppendDeflatedHuffman(nil, ws.OpBinary, []byte(p))
		if !bytes.Equal(h, d2) {
			t.Fatalf("AppendDeflatedHuffman differs from Shared.DeflatedHuffman")
		}
		if !bytes.Equal(s.Bytes(), AppendFrame(nil, ws.OpBinary, []byte(p))) {
			t.Fatalf("Shared.Bytes differs from AppendFrame")
		}
		for _, enc := range [][]byte{d1, d2, s.Bytes()} {
			got := feed(t, testLimits, &deflateOpt{}, maskFrames(t, enc, key1), nil)
			if got.Err != nil || len(got.Events) != 1 || got.Events[0].Data != p {
				t.Fatalf("round trip of %d bytes: %v %v", len(p), got.Events, got.Err)
			}
		}
		s.Release()
	}
	if c, _ := AppendDeflated(nil, ws.OpPing, []byte("p")); !bytes.Equal(c, AppendFrame(nil, ws.OpPing, []byte("p"))) {
		t.Fatalf("control frame was compressed: % x", c)
	}
}

func TestSharedConcurrent(t *testing.T) {
	payload := []byte(strings.Repeat("broadcast ", 500))
	s := NewShared(ws.OpText, payload)
	want, _ := AppendDeflated(nil, ws.OpText, payload)
	var wg sync.WaitGroup
	for range 8 {
		s.Retain()
		wg.Go(func() {
			defer s.Release()
			b, err := s.Deflated()
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("Deflated: %v", err)
			}
			if _, err := s.DeflatedHuffman(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("over-release did not panic")
		}
	}()
	s.Release()
}

// TestGorillaInterop negotiates with a gorilla/websocket client through
// gobwas' Upgrader and our negotiator, then exchanges compressed messages
// both ways.
func TestGorillaInterop(t *testing.T) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	deadline := time.Now().Add(10 * time.Second)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)

	var neg DeflateNegotiator
	upErr := make(chan error, 1)
	go func() {
		_, err := ws.Upgrader{Negotiate: neg.Negotiate}.Upgrade(sc)
		upErr <- err
	}()
	dialer := websocket.Dialer{
		NetDial:           func(string, string) (net.Conn, error) { return cc, nil },
		EnableCompression: true,
	}
	conn, resp, err := dialer.Dial("ws://example/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-upErr; err != nil {
		t.Fatal(err)
	}
	params, ok := neg.Accepted()
	if !ok || !params.ServerNoContextTakeover {
		t.Fatalf("negotiated %+v %v; response %q", params, ok, resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	msgs := []string{strings.Repeat("gorilla says hi ", 300), "short", strings.Repeat("z", 100000)}
	go func() {
		conn.EnableWriteCompression(true)
		for _, m := range msgs {
			conn.WriteMessage(websocket.TextMessage, []byte(m))
		}
	}()
	var d Decoder
	d.Init(testLimits)
	d.EnableDeflate(params)
	defer d.Release()
	buf := make([]byte, 4096)
	var got []string
	for len(got) < len(msgs) {
		k, err := sc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		p := buf[:k]
		for len(p) > 0 {
			n, m, err := d.Next(p)
			p = p[n:]
			if err != nil {
				t.Fatal(err)
			}
			if m.Op == 0 {
				break
			}
			got = append(got, string(m.Payload))
		}
	}
	for i := range msgs {
		if got[i] != msgs[i] {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got[i]), len(msgs[i]))
		}
	}

	// Server to client: compressed, shared compressed, huffman, plain.
	s := NewShared(ws.OpText, []byte(msgs[0]))
	defer s.Release()
	sd, _ := s.Deflated()
	sh, _ := s.DeflatedHuffman()
	ad, _ := AppendDeflated(nil, ws.OpText, []byte(msgs[2]))
	out := cat(sd, sh, ad, AppendFrame(nil, ws.OpBinary, []byte("plain")), AppendClose(nil, 1000, "done"))
	go sc.Write(out)
	for i, want := range []string{msgs[0], msgs[0], msgs[2], "plain"} {
		_, b, err := conn.ReadMessage()
		if err != nil || string(b) != want {
			t.Fatalf("client read %d: %v (%d bytes, want %d)", i, err, len(b), len(want))
		}
	}
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Text != "done" {
		t.Fatalf("close: %v", err)
	}
	_ = wsflate.ExtensionName
}

// wordSoup is text that compresses, but not to almost nothing, so that
// context takeover visibly helps.
func wordSoup(n int) string {
	words := []string{"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "κόσμε", "日本", "wsgate", "frame"}
	var b strings.Builder
	x := uint32(1)
	for b.Len() < n {
		x = x*1664525 + 1013904223
		b.WriteString(words[(x>>16)%uint32(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}
