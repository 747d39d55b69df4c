package frame

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

var (
	bin256 = bytes.Repeat([]byte{0xab}, 256)
	bin64k = func() []byte {
		b := make([]byte, 65536)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}()
)

// vectors are RFC 6455 5.7 examples. server is the unmasked encoding (what
// AppendFrame must produce for unfragmented ones); client is what a client
// sends (derived with maskFrames unless given literally by the RFC).
var vectors = []struct {
	name       string
	server     []byte
	client     []byte // nil: maskFrames(server, key1)
	fragmented bool
	want       []event
}{
	{
		name:   "hello",
		server: []byte{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f},
		client: []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
		want:   []event{{Op: ws.OpText, Data: "Hello"}},
	},
	{
		name:       "fragmented hello",
		server:     []byte{0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f},
		fragmented: true,
		want:       []event{{Op: ws.OpText, Data: "Hello"}},
	},
	{
		name:   "ping hello",
		server: []byte{0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f},
		want:   []event{{Op: ws.OpPing, Data: "Hello"}},
	},
	{
		name:   "pong hello",
		server: []byte{0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f},
		client: []byte{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},
		want:   []event{{Op: ws.OpPong, Data: "Hello"}},
	},
	{
		name:   "binary 256 16-bit length",
		server: append([]byte{0x82, 0x7e, 0x01, 0x00}, bin256...),
		want:   []event{{Op: ws.OpBinary, Data: string(bin256)}},
	},
	{
		name:   "binary 64KiB 64-bit length",
		server: append([]byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}, bin64k...),
		want:   []event{{Op: ws.OpBinary, Data: string(bin64k)}},
	},
	{
		name:   "close normal",
		server: []byte{0x88, 0x04, 0x03, 0xe8, 'o', 'k'},
		want:   []event{{Op: ws.OpClose, Data: "\x03\xe8ok", Code: 1000, Reason: "ok"}},
	},
	{
		name:   "close empty",
		server: []byte{0x88, 0x00},
		want:   []event{{Op: ws.OpClose, Code: ws.StatusNoStatusRcvd}},
	},
}

var testLimits = &Limits{MaxMessageSize: 1 << 20}

func TestVectorsEncode(t *testing.T) {
	for _, v := range vectors {
		if v.fragmented {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			e := v.want[0]
			var got []byte
			if e.Op == ws.OpClose {
				got = AppendClose(nil, e.Code, e.Reason)
			} else {
				got = AppendFrame(nil, e.Op, []byte(e.Data))
			}
			if !bytes.Equal(got, v.server) {
				t.Fatalf("got % x\nwant % x", got[:min(len(got), 16)], v.server[:min(len(v.server), 16)])
			}
			if hs := HeaderSize(len(e.Data)); hs != len(v.server)-len(e.Data) {
				t.Fatalf("HeaderSize %d, want %d", hs, len(v.server)-len(e.Data))
			}
		})
	}
}

func TestVectorsDecode(t *testing.T) {
	for _, v := range vectors {
		client := v.client
		if client == nil {
			client = maskFrames(t, v.server, key1)
		} else if !bytes.Equal(client, maskFrames(t, v.server, key1)) {
			t.Fatalf("%s: RFC client bytes differ from maskFrames", v.name)
		}
		for name, split := range splits(1) {
			t.Run(v.name+"/"+name, func(t *testing.T) {
				got := feed(t, testLimits, nil, client, split)
				want := result{Events: v.want}
				if !sameResult(got, want) {
					t.Fatalf("got %v %v, want %v", got.Events, got.Err, want.Events)
				}
			})
		}
	}
}

func TestDecoderSize(t *testing.T) {
	size := unsafe.Sizeof(Decoder{})
	t.Logf("unsafe.Sizeof(Decoder{}) = %d bytes", size)
	if size > 64 {
		t.Fatalf("Decoder is %d bytes, want <= 64", size)
	}
}

func text(fin bool, s string) []byte { return data(fin, ws.OpText, s) }

func data(fin bool, op ws.OpCode, s string) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	return clientFrame(b0, key1, []byte(s))
}

func cont(fin bool, s string) []byte { return data(fin, ws.OpContinuation, s) }

func ctrl(op ws.OpCode, s string) []byte { return clientFrame(0x80|byte(op), key1, []byte(s)) }

func closeFrame(code uint16, reason string) []byte {
	return ctrl(ws.OpClose, string(binary.BigEndian.AppendUint16(nil, code))+reason)
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// header returns just a client header announcing n payload bytes.
func header(b0 byte, n uint64) []byte {
	b := []byte{b0, 0x80 | 127}
	b = binary.BigEndian.AppendUint64(b, n)
	return append(b, key1[:]...)
}

func TestRules(t *testing.T) {
	small := &Limits{MaxMessageSize: 100}
	tests := []rule{
		{name: "unmasked", in: []byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, code: 1002, err: ErrUnmasked},
		{name: "rsv1 without deflate", in: clientFrame(0xc1, key1, []byte("x")), code: 1002, err: ErrReservedBits},
		{name: "rsv1 on ping", in: clientFrame(0xc9, key1, nil), deflate: true, code: 1002, err: ErrReservedBits},
		{name: "rsv1 on continuation", in: cat(clientFrame(0x41, key1, nil), clientFrame(0xc0, key1, nil)), deflate: true, code: 1002, err: ErrReservedBits},
		{name: "rsv2", in: clientFrame(0xa1, key1, []byte("x")), code: 1002, err: ErrReservedBits},
		{name: "rsv3", in: clientFrame(0x91, key1, []byte("x")), code: 1002, err: ErrReservedBits},
		{name: "rsv2 with deflate", in: clientFrame(0xa1, key1, []byte("x")), deflate: true, code: 1002, err: ErrReservedBits},
		{name: "opcode 3", in: clientFrame(0x83, key1, nil), code: 1002, err: ErrBadOpcode},
		{name: "opcode 7", in: clientFrame(0x87, key1, nil), code: 1002, err: ErrBadOpcode},
		{name: "opcode B", in: clientFrame(0x8b, key1, nil), code: 1002, err: ErrBadOpcode},
		{name: "opcode F", in: clientFrame(0x8f, key1, nil), code: 1002, err: ErrBadOpcode},
		{name: "ping 126 bytes", in: ctrl(ws.OpPing, strings.Repeat("a", 126)), code: 1002, err: ErrControlTooLong},
		{name: "close 126 bytes", in: closeFrame(1000, strings.Repeat("a", 124)), code: 1002, err: ErrControlTooLong},
		{name: "ping 125 bytes", in: ctrl(ws.OpPing, strings.Repeat("a", 125)), want: []event{{Op: ws.OpPing, Data: strings.Repeat("a", 125)}}},
		{name: "ping without fin", in: clientFrame(0x09, key1, nil), code: 1002, err: ErrFragmentedControl},
		{name: "continuation first", in: cont(true, "x"), code: 1002, err: ErrBadContinuation},
		{name: "continuation after complete message", in: cat(text(true, "a"), cont(true, "b")), want: []event{{Op: ws.OpText, Data: "a"}}, code: 1002, err: ErrBadContinuation},
		{name: "text during fragmented", in: cat(text(false, "a"), text(true, "b")), code: 1002, err: ErrBadContinuation},
		{name: "binary during fragmented", in: cat(text(false, "a"), data(true, ws.OpBinary, "b")), code: 1002, err: ErrBadContinuation},
		{name: "ping between fragments", in: cat(text(false, "He"), ctrl(ws.OpPing, "p"), cont(false, "l"), ctrl(ws.OpPong, ""), cont(true, "lo")),
			want: []event{{Op: ws.OpPing, Data: "p"}, {Op: ws.OpPong}, {Op: ws.OpText, Data: "Hello"}}},
		{name: "close between fragments", in: cat(text(false, "He"), closeFrame(1001, "bye")),
			want: []event{{Op: ws.OpClose, Data: "\x03\xe9bye", Code: 1001, Reason: "bye"}}},
		{name: "too large announced", in: header(0x82, 101), limits: small, code: 1009, err: ErrTooLarge},
		{name: "too large huge announced", in: header(0x82, 1<<62), limits: small, code: 1009, err: ErrTooLarge},
		{name: "exactly max", in: data(true, ws.OpBinary, strings.Repeat("z", 100)), limits: small, want: []event{{Op: ws.OpBinary, Data: strings.Repeat("z", 100)}}},
		{name: "too large by fragments", in: cat(data(false, ws.OpBinary, strings.Repeat("z", 60)), header(0x80, 41)), limits: small, code: 1009, err: ErrTooLarge},
		{name: "fragments up to max", in: cat(data(false, ws.OpBinary, strings.Repeat("z", 60)), cont(true, strings.Repeat("y", 40))), limits: small,
			want: []event{{Op: ws.OpBinary, Data: strings.Repeat("z", 60) + strings.Repeat("y", 40)}}},
		{name: "64-bit length high bit", in: header(0x82, 1<<63), code: 1002, err: ErrBadLength},
		{name: "non-minimal 16-bit length", in: clientFrameLen(0x81, key1, []byte("Hello"), 2), want: []event{{Op: ws.OpText, Data: "Hello"}}},
		{name: "non-minimal 64-bit length", in: clientFrameLen(0x81, key1, []byte("Hello"), 8), want: []event{{Op: ws.OpText, Data: "Hello"}}},
		{name: "empty text", in: text(true, ""), want: []event{{Op: ws.OpText}}},
		{name: "empty fragments", in: cat(text(false, ""), cont(false, ""), cont(true, "")), want: []event{{Op: ws.OpText}}},
		{name: "invalid utf8", in: text(true, "a\xffb"), code: 1007, err: ErrInvalidUTF8},
		{name: "surrogate", in: text(true, "\xed\xa0\x80"), code: 1007, err: ErrInvalidUTF8},
		{name: "utf8 split across fragments", in: cat(text(false, "\xce"), cont(false, "\xba\xe1"), cont(true, "\xbd\xb9")), want: []event{{Op: ws.OpText, Data: "κό"}}},
		{name: "invalid utf8 across fragments", in: cat(text(false, "\xce"), cont(true, "a")), code: 1007, err: ErrInvalidUTF8},
		{name: "truncated utf8 at end", in: cat(text(false, "ok"), cont(true, "\xe1\xbd")), code: 1007, err: ErrInvalidUTF8},
		// The header announces 1000 bytes but only an invalid prefix arrives:
		// the decoder must fail without waiting for the rest.
		{name: "fail fast invalid prefix", in: clientFrame(0x81, key1, append([]byte("\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80"), make([]byte, 988)...))[:14+11], code: 1007, err: ErrInvalidUTF8},
		{name: "binary not validated", in: data(true, ws.OpBinary, "\xff"), want: []event{{Op: ws.OpBinary, Data: "\xff"}}},
		{name: "close 1 byte", in: ctrl(ws.OpClose, "x"), code: 1002, err: ErrBadClosePayload},
		{name: "close bad reason", in: closeFrame(1000, "\xff"), code: 1007, err: ErrInvalidUTF8},
		{name: "close code only", in: closeFrame(1000, ""), want: []event{{Op: ws.OpClose, Data: "\x03\xe8", Code: 1000}}},
		{name: "close 125 bytes", in: closeFrame(1000, strings.Repeat("r", 123)), want: []event{{Op: ws.OpClose, Data: "\x03\xe8" + strings.Repeat("r", 123), Code: 1000, Reason: strings.Repeat("r", 123)}}},
	}
	// Fail-fast: the header announces 1000 bytes but only an invalid
	// prefix arrives; the decoder must not wait for the rest.
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		tests = append(tests, rule{name: "close valid " + strconv.Itoa(int(code)), in: closeFrame(code, "r"), want: []event{{Op: ws.OpClose, Data: string(binary.BigEndian.AppendUint16(nil, code)) + "r", Code: ws.StatusCode(code), Reason: "r"}}})
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		tests = append(tests, rule{name: "close invalid " + strconv.Itoa(int(code)), in: closeFrame(code, ""), code: 1002, err: ErrBadCloseCode})
	}
	for _, tt := range tests {
		l := tt.limits
		if l == nil {
			l = testLimits
		}
		var df *deflateOpt
		if tt.deflate {
			df = &deflateOpt{}
		}
		want := result{Events: tt.want, Code: tt.code, Err: tt.err}
		for name, split := range splits(2) {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				got := feed(t, l, df, tt.in, split)
				if !sameResult(got, want) {
					t.Fatalf("got %v code %d err %v\nwant %v code %d err %v", got.Events, got.Code, got.Err, want.Events, want.Code, want.Err)
				}
			})
		}
	}
}

// rule is one row of TestRules: input, and the events before the error (or
// all events when there is no error).
type rule struct {
	name    string
	in      []byte
	limits  *Limits
	deflate bool
	want    []event
	code    ws.StatusCode
	err     error
}

func TestReuseAfterRelease(t *testing.T) {
	var d Decoder
	d.Init(testLimits)
	d.EnableDeflate(wsflateNoContext)
	in := text(true, "Hello")
	if _, m, err := d.Next(bytes.Clone(in[:8])); err != nil || m.Op != 0 || !d.InMessage() {
		t.Fatalf("partial: %v %v", m.Op, err)
	}
	d.Release()
	if d != (Decoder{}) {
		t.Fatalf("Release did not zero the decoder")
	}
	d.Init(testLimits)
	defer d.Release()
	if _, m, err := d.Next(bytes.Clone(in)); err != nil || string(m.Payload) != "Hello" {
		t.Fatalf("after reuse: %q %v", m.Payload, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Init with a zero limit did not panic")
		}
	}()
	d.Init(&Limits{})
}

func TestCloseErrorFormat(t *testing.T) {
	var d Decoder
	d.Init(testLimits)
	defer d.Release()
	_, _, err := d.Next([]byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'})
	if got, want := err.Error(), "frame: client frame is not masked (close 1002)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}
