package wsproto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

func TestAccept(t *testing.T) {
	// RFC 6455 example
	if got := AcceptFor("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept %q", got)
	}
}

func TestFrameRoundTripWithGobwas(t *testing.T) {
	for _, n := range []int{0, 1, 7, 125, 126, 1000, 65535, 65536, 200000} {
		p := bytes.Repeat([]byte{'a', 'b', 'c'}, n/3+1)[:n]
		fr := AppendFrame(nil, OpBinary, p, 0xdeadbeef)
		// decode with gobwas as an independent oracle
		r := bytes.NewReader(fr)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		if !h.Fin || h.OpCode != ws.OpBinary || !h.Masked || h.Length != int64(n) {
			t.Fatalf("n=%d header %+v", n, h)
		}
		body := make([]byte, h.Length)
		if _, err := r.Read(body); err != nil && n > 0 {
			t.Fatal(err)
		}
		ws.Cipher(body, h.Mask, 0)
		if !bytes.Equal(body, p) {
			t.Fatalf("n=%d payload mismatch", n)
		}
		// and with our own parser
		mh, ok, err := ParseHeader(fr)
		if !ok || err != nil || mh.Len != n || mh.HLen+n != len(fr) || !mh.Masked {
			t.Fatalf("n=%d own parse %+v ok=%v err=%v", n, mh, ok, err)
		}
		for cut := 0; cut < mh.HLen; cut++ {
			if _, ok, _ := ParseHeader(fr[:cut]); ok {
				t.Fatalf("n=%d header reported complete at %d bytes", n, cut)
			}
		}
	}
}

func TestParseServerFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, ws.NewTextFrame(bytes.Repeat([]byte("x"), 300))); err != nil {
		t.Fatal(err)
	}
	h, ok, err := ParseHeader(buf.Bytes())
	if !ok || err != nil || h.Op != OpText || h.Len != 300 || h.HLen != 4 || h.Masked || !h.Fin {
		t.Fatalf("%+v %v %v", h, ok, err)
	}
	if _, _, err := ParseHeader([]byte{0xC1, 0}); err == nil {
		t.Fatal("RSV1 must be rejected")
	}
}

func TestUpgradeResponse(t *testing.T) {
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: " + Accept + "\r\n\r\n\x81\x02hi"
	n, err := ParseUpgradeResponse([]byte(resp))
	if err != nil || resp[n:] != "\x81\x02hi" {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if _, err := ParseUpgradeResponse([]byte(resp[:20])); err != ErrIncomplete {
		t.Fatalf("want incomplete, got %v", err)
	}
	_, err = ParseUpgradeResponse([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("want status 403, got %v", err)
	}
	if _, err := ParseUpgradeResponse([]byte("HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n")); err != ErrBadAccept {
		t.Fatalf("want bad accept, got %v", err)
	}
	req := string(UpgradeRequest("127.0.0.1:1", "/ws?x=1", []string{"Authorization: Bearer t"}))
	if !bytes.HasPrefix([]byte(req), []byte("GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")) || !bytes.HasSuffix([]byte(req), []byte("Authorization: Bearer t\r\n\r\n")) {
		t.Fatalf("request %q", req)
	}
}
