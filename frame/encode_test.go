package frame

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

func TestAppendClose(t *testing.T) {
	tests := []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   []byte
	}{
		{name: "normal", code: 1000, reason: "", want: []byte{0x88, 0x02, 0x03, 0xe8}},
		{name: "reason", code: 1001, reason: "bye", want: []byte{0x88, 0x05, 0x03, 0xe9, 'b', 'y', 'e'}},
		{name: "no status", code: ws.StatusNoStatusRcvd, reason: "ignored", want: []byte{0x88, 0x00}},
		{name: "truncated", code: 1000, reason: strings.Repeat("r", 200), want: append([]byte{0x88, 125, 0x03, 0xe8}, strings.Repeat("r", 123)...)},
		// 61 two-byte runes = 122 bytes fit; the 62nd would end at 124 > 123.
		{name: "truncated at rune", code: 1000, reason: strings.Repeat("é", 70), want: append([]byte{0x88, 124, 0x03, 0xe8}, strings.Repeat("é", 61)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendClose([]byte("x"), tt.code, tt.reason)
			if !bytes.Equal(got[1:], tt.want) {
				t.Fatalf("got % x\nwant % x", got[1:], tt.want)
			}
			if len(tt.want) > 2 {
				r := feed(t, testLimits, nil, maskFrames(t, got[1:], key1), nil)
				if r.Err != nil || r.Events[0].Code != tt.code {
					t.Fatalf("decode: %v %v", r.Events, r.Err)
				}
			}
		})
	}
}

func TestHeaderSize(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		if got, want := HeaderSize(n), len(AppendFrame(nil, ws.OpBinary, make([]byte, n)))-n; got != want {
			t.Fatalf("HeaderSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestAllocs(t *testing.T) {
	frame := clientFrame(0x81, key1, bytes.Repeat([]byte("a"), 64))
	buf := make([]byte, len(frame))
	var d Decoder
	d.Init(testLimits)
	defer d.Release()
	if a := testing.AllocsPerRun(1000, func() {
		copy(buf, frame)
		n, m, err := d.Next(buf)
		if err != nil || n != len(buf) || m.Op != ws.OpText || len(m.Payload) != 64 {
			t.Fatalf("decode: %d %v %v", n, m.Op, err)
		}
	}); a != 0 {
		t.Fatalf("decoding a 64-byte frame: %v allocs", a)
	}
	dst := make([]byte, 0, 256)
	payload := bytes.Repeat([]byte("b"), 64)
	if a := testing.AllocsPerRun(1000, func() { dst = AppendFrame(dst[:0], ws.OpText, payload) }); a != 0 {
		t.Fatalf("AppendFrame: %v allocs", a)
	}
	if a := testing.AllocsPerRun(1000, func() { dst = AppendClose(dst[:0], 1000, "bye") }); a != 0 {
		t.Fatalf("AppendClose: %v allocs", a)
	}
}

// TestIdleHoldsNoBuffers: after a buffered message is handed out, Next(nil)
// returns the buffer, and mid-message state is released by Release.
func TestIdleHoldsNoBuffers(t *testing.T) {
	var d Decoder
	d.Init(testLimits)
	defer d.Release()
	in := cat(text(false, "He"), cont(true, "llo"))
	var m Message
	for p := in; len(p) > 0; {
		n, mm, err := d.Next(p)
		if err != nil {
			t.Fatal(err)
		}
		p = p[n:]
		if mm.Op != 0 {
			m = mm
		}
		if mm.Op == 0 && !d.InMessage() {
			t.Fatalf("InMessage false between fragments")
		}
	}
	if string(m.Payload) != "Hello" || d.msg == nil {
		t.Fatalf("got %q", m.Payload)
	}
	if d.InMessage() {
		t.Fatalf("InMessage after a complete message")
	}
	d.Next(nil)
	if d.msg != nil || d.ctl != nil {
		t.Fatalf("idle decoder still holds a buffer")
	}
	d.Next(in[:3])
	if !d.InMessage() {
		t.Fatalf("InMessage false with a partial header")
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		ok      bool
		want    wsflate.Parameters
		resp    string
		huffman bool
	}{
		{name: "bare", header: "permessage-deflate", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true}, resp: "permessage-deflate;server_no_context_takeover"},
		{name: "browser", header: "permessage-deflate; client_max_window_bits", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ClientMaxWindowBits: 15}, resp: "permessage-deflate;server_no_context_takeover;client_max_window_bits=15"},
		{name: "client no context", header: "permessage-deflate; client_no_context_takeover; server_no_context_takeover", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}, resp: "permessage-deflate;server_no_context_takeover;client_no_context_takeover"},
		{name: "client bits value", header: "permessage-deflate; client_max_window_bits=10", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ClientMaxWindowBits: 10}, resp: "permessage-deflate;server_no_context_takeover;client_max_window_bits=10"},
		{name: "server bits 10 huffman", header: "permessage-deflate; server_max_window_bits=10", ok: true, huffman: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ServerMaxWindowBits: 10}, resp: "permessage-deflate;server_no_context_takeover;server_max_window_bits=10"},
		{name: "server bits 15", header: "permessage-deflate; server_max_window_bits=15", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ServerMaxWindowBits: 15}, resp: "permessage-deflate;server_no_context_takeover;server_max_window_bits=15"},
		{name: "malformed first, good second", header: "permessage-deflate; foo, permessage-deflate; client_no_context_takeover", ok: true,
			want: wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}, resp: "permessage-deflate;server_no_context_takeover;client_no_context_takeover"},
		{name: "other extension", header: "x-webkit-deflate-frame", ok: false},
		{name: "unknown param", header: "permessage-deflate; foo=1", ok: false},
		{name: "duplicate", header: "permessage-deflate; client_no_context_takeover; client_no_context_takeover", ok: false},
		{name: "duplicate bits", header: "permessage-deflate; client_max_window_bits; client_max_window_bits=9", ok: false},
		{name: "bits too big", header: "permessage-deflate; server_max_window_bits=16", ok: false},
		{name: "bits too small", header: "permessage-deflate; client_max_window_bits=7", ok: false},
		{name: "server bits no value", header: "permessage-deflate; server_max_window_bits", ok: false},
		{name: "no-context with value", header: "permessage-deflate; server_no_context_takeover=1", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n DeflateNegotiator
			var resp []httphead.Option
			opts, ok := httphead.ParseOptions([]byte(tt.header), nil)
			if !ok {
				t.Fatalf("bad test header")
			}
			for _, o := range opts {
				r, err := n.Negotiate(o)
				if err != nil {
					t.Fatal(err)
				}
				if r.Size() > 0 {
					resp = append(resp, r)
				}
			}
			p, ok := n.Accepted()
			if ok != tt.ok || (ok && p != tt.want) || len(resp) != map[bool]int{true: 1, false: 0}[tt.ok] {
				t.Fatalf("accepted %v %+v (%d responses), want %v %+v", ok, p, len(resp), tt.ok, tt.want)
			}
			if !ok {
				return
			}
			var w bytes.Buffer
			httphead.WriteOptions(&w, resp)
			if got := w.String(); got != tt.resp {
				t.Fatalf("response %q, want %q", got, tt.resp)
			}
			if HuffmanOnly(p) != tt.huffman {
				t.Fatalf("HuffmanOnly = %v", HuffmanOnly(p))
			}
		})
	}
}
