package engine

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/frame"
)

// RFC 6455 conformance of the engine with EchoHandler, over real sockets
// with the raw client of rawclient_test.go. Every case runs on its own
// connection.

// rfcOpts are the options of the conformance engines: small timeouts so
// failures show quickly, and a message limit above the 64-bit length form.
func rfcOpts() Options {
	return Options{
		MaxMessageSize:   1 << 17,
		HandshakeTimeout: 300 * time.Millisecond,
		CloseTimeout:     300 * time.Millisecond,
		TickInterval:     10 * time.Millisecond,
	}
}

// wantFrame is one frame expected from the server.
type wantFrame struct {
	op      byte
	payload []byte
}

// rawCase is one conformance case: writes (one Write call each), then the
// frames expected back in order, then either a close with one of closeCodes
// (and the TCP close), or, when closeCodes is empty, a normal close
// handshake proving the connection is still healthy.
type rawCase struct {
	name       string
	writes     [][]byte
	want       []wantFrame
	closeCodes []uint16
}

func runRawCases(t *testing.T, e *Engine, cases []rawCase, extra ...string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialUpgraded(t, e, extra...)
			for _, w := range tc.writes {
				c.write(w)
			}
			for _, w := range tc.want {
				c.expectMessage(w.op, w.payload)
			}
			if len(tc.closeCodes) > 0 {
				c.expectCloseOneOf(t, tc.closeCodes...)
				return
			}
			c.writeFrame(opClose, closePayload(1000, "done"))
			c.expectClose(t, 1000)
		})
	}
}

// Frame shorthands: mf is a masked frame with a string payload.
func mf(fin bool, op byte, payload string) []byte {
	return clientFrame(fin, 0, op, true, []byte(payload))
}

func catFrames(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func oneWrite(parts ...[]byte) [][]byte { return [][]byte{catFrames(parts...)} }

func testPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func TestRFCEcho(t *testing.T) {
	e := startEngine(t, rfcOpts(), EchoHandler{})
	text3k := strings.Repeat("héllo wörld ", 256)
	manyWrite, manyWant := []byte(nil), []wantFrame(nil)
	for i := range 50 {
		p := fmt.Sprintf("message %d", i)
		manyWrite = append(manyWrite, mf(true, opText, p)...)
		manyWant = append(manyWant, wantFrame{op: opText, payload: []byte(p)})
	}
	oneByteFrags := [][]byte{mf(false, opText, "H")}
	for _, ch := range "ello, world" {
		oneByteFrags = append(oneByteFrags, mf(false, opCont, string(ch)))
	}
	oneByteFrags = append(oneByteFrags, mf(true, opCont, "!"))
	cases := []rawCase{
		{name: "text", writes: oneWrite(mf(true, opText, "Hello")), want: []wantFrame{{op: opText, payload: []byte("Hello")}}},
		{name: "text utf8", writes: oneWrite(mf(true, opText, "κόσμε")), want: []wantFrame{{op: opText, payload: []byte("κόσμε")}}},
		{name: "binary", writes: oneWrite(clientFrame(true, 0, opBinary, true, []byte{0, 1, 0xff, 0xfe})), want: []wantFrame{{op: opBinary, payload: []byte{0, 1, 0xff, 0xfe}}}},
		{name: "empty text", writes: oneWrite(mf(true, opText, "")), want: []wantFrame{{op: opText, payload: []byte{}}}},
		{name: "empty binary", writes: oneWrite(mf(true, opBinary, "")), want: []wantFrame{{op: opBinary, payload: []byte{}}}},
		{name: "125 bytes (7-bit length)", writes: oneWrite(clientFrame(true, 0, opBinary, true, testPattern(125))), want: []wantFrame{{op: opBinary, payload: testPattern(125)}}},
		{name: "126 bytes (16-bit length)", writes: oneWrite(clientFrame(true, 0, opBinary, true, testPattern(126))), want: []wantFrame{{op: opBinary, payload: testPattern(126)}}},
		{name: "65535 bytes (16-bit length)", writes: oneWrite(clientFrame(true, 0, opBinary, true, testPattern(65535))), want: []wantFrame{{op: opBinary, payload: testPattern(65535)}}},
		{name: "65536 bytes (64-bit length)", writes: oneWrite(clientFrame(true, 0, opBinary, true, testPattern(65536))), want: []wantFrame{{op: opBinary, payload: testPattern(65536)}}},
		{name: "3k text", writes: oneWrite(mf(true, opText, text3k)), want: []wantFrame{{op: opText, payload: []byte(text3k)}}},
		{
			name:   "text in 3 fragments",
			writes: oneWrite(mf(false, opText, "Hel"), mf(false, opCont, "lo, "), mf(true, opCont, "world")),
			want:   []wantFrame{{op: opText, payload: []byte("Hello, world")}},
		},
		{
			name:   "fragments in separate writes",
			writes: [][]byte{mf(false, opBinary, "ab"), mf(false, opCont, "cd"), mf(true, opCont, "ef")},
			want:   []wantFrame{{op: opBinary, payload: []byte("abcdef")}},
		},
		{
			name:   "ping between fragments is answered before the message",
			writes: oneWrite(mf(false, opText, "frag"), mf(true, opPing, "between"), mf(true, opCont, "ment")),
			want:   []wantFrame{{op: opPong, payload: []byte("between")}, {op: opText, payload: []byte("fragment")}},
		},
		{
			name:   "ping and pong between fragments in separate writes",
			writes: [][]byte{mf(false, opText, "a"), mf(true, opPing, "p1"), mf(false, opCont, "b"), mf(true, opPong, "x"), mf(true, opPing, "p2"), mf(true, opCont, "c")},
			want:   []wantFrame{{op: opPong, payload: []byte("p1")}, {op: opPong, payload: []byte("p2")}, {op: opText, payload: []byte("abc")}},
		},
		{name: "1-byte fragments", writes: oneWrite(oneByteFrags...), want: []wantFrame{{op: opText, payload: []byte("Hello, world!")}}},
		{name: "1-byte fragments in separate writes", writes: oneByteFrags, want: []wantFrame{{op: opText, payload: []byte("Hello, world!")}}},
		{
			name:   "empty fragments",
			writes: oneWrite(mf(false, opText, ""), mf(false, opCont, "x"), mf(true, opCont, "")),
			want:   []wantFrame{{op: opText, payload: []byte("x")}},
		},
		{
			// κ is CE BA: a code point split across fragments is valid.
			name:   "utf8 code point split across fragments",
			writes: oneWrite(clientFrame(false, 0, opText, true, []byte{0xce}), clientFrame(true, 0, opCont, true, []byte{0xba})),
			want:   []wantFrame{{op: opText, payload: []byte("κ")}},
		},
		{name: "ping with payload", writes: oneWrite(mf(true, opPing, "are you there")), want: []wantFrame{{op: opPong, payload: []byte("are you there")}}},
		{name: "empty ping", writes: oneWrite(mf(true, opPing, "")), want: []wantFrame{{op: opPong, payload: []byte{}}}},
		{name: "ping 125 bytes", writes: oneWrite(clientFrame(true, 0, opPing, true, testPattern(125))), want: []wantFrame{{op: opPong, payload: testPattern(125)}}},
		{
			name:   "unsolicited pong is ignored",
			writes: oneWrite(mf(true, opPong, "unasked"), mf(true, opText, "after")),
			want:   []wantFrame{{op: opText, payload: []byte("after")}},
		},
		{name: "many frames in one write", writes: oneWrite(manyWrite), want: manyWant},
		{
			name:   "large fragmented message",
			writes: oneWrite(clientFrame(false, 0, opBinary, true, testPattern(70000)[:40000]), clientFrame(true, 0, opCont, true, testPattern(70000)[40000:])),
			want:   []wantFrame{{op: opBinary, payload: testPattern(70000)}},
		},
	}
	runRawCases(t, e, cases)
}

func TestRFCProtocolErrors(t *testing.T) {
	e := startEngine(t, rfcOpts(), EchoHandler{})
	invalid := []byte{0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64}
	cases := []rawCase{
		{name: "unmasked text", writes: oneWrite(clientFrame(true, 0, opText, false, []byte("hi"))), closeCodes: []uint16{1002}},
		{name: "unmasked ping", writes: oneWrite(clientFrame(true, 0, opPing, false, nil)), closeCodes: []uint16{1002}},
		{name: "unmasked close", writes: oneWrite(clientFrame(true, 0, opClose, false, closePayload(1000, ""))), closeCodes: []uint16{1002}},
		{name: "RSV1 without extension", writes: oneWrite(clientFrame(true, rsv1, opText, true, []byte("hi"))), closeCodes: []uint16{1002}},
		{name: "RSV2", writes: oneWrite(clientFrame(true, rsv2, opText, true, []byte("hi"))), closeCodes: []uint16{1002}},
		{name: "RSV3", writes: oneWrite(clientFrame(true, rsv3, opBinary, true, []byte("hi"))), closeCodes: []uint16{1002}},
		{name: "RSV1-3 on ping", writes: oneWrite(clientFrame(true, rsv1|rsv2|rsv3, opPing, true, nil)), closeCodes: []uint16{1002}},
		{name: "RSV2 after a valid message", writes: oneWrite(mf(true, opText, "ok"), clientFrame(true, rsv2, opText, true, []byte("bad"))), want: []wantFrame{{op: opText, payload: []byte("ok")}}, closeCodes: []uint16{1002}},
		{name: "ping 126 bytes", writes: oneWrite(clientFrame(true, 0, opPing, true, testPattern(126))), closeCodes: []uint16{1002}},
		{name: "pong 126 bytes", writes: oneWrite(clientFrame(true, 0, opPong, true, testPattern(126))), closeCodes: []uint16{1002}},
		{name: "close 126 bytes", writes: oneWrite(clientFrame(true, 0, opClose, true, closePayload(1000, strings.Repeat("x", 124)))), closeCodes: []uint16{1002}},
		{name: "fragmented ping", writes: oneWrite(mf(false, opPing, "p"), mf(true, opCont, "q")), closeCodes: []uint16{1002}},
		{name: "fragmented close", writes: oneWrite(clientFrame(false, 0, opClose, true, closePayload(1000, ""))), closeCodes: []uint16{1002}},
		{name: "continuation without start", writes: oneWrite(mf(true, opCont, "orphan")), closeCodes: []uint16{1002}},
		{name: "non-final continuation without start", writes: oneWrite(mf(false, opCont, "orphan")), closeCodes: []uint16{1002}},
		{name: "continuation after a complete message", writes: oneWrite(mf(true, opText, "done"), mf(true, opCont, "more")), want: []wantFrame{{op: opText, payload: []byte("done")}}, closeCodes: []uint16{1002}},
		{name: "text while fragmented message open", writes: oneWrite(mf(false, opText, "part"), mf(true, opText, "new")), closeCodes: []uint16{1002}},
		{name: "binary while fragmented message open", writes: oneWrite(mf(false, opBinary, "part"), mf(false, opBinary, "new")), closeCodes: []uint16{1002}},
		{name: "64-bit length with the high bit set", writes: oneWrite([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}), closeCodes: []uint16{1002}},
		{name: "invalid utf8 text", writes: oneWrite(clientFrame(true, 0, opText, true, invalid)), closeCodes: []uint16{1007}},
		{name: "truncated utf8 at end of text", writes: oneWrite(clientFrame(true, 0, opText, true, []byte{'a', 0xce})), closeCodes: []uint16{1007}},
		{name: "invalid utf8 in 2nd fragment", writes: oneWrite(mf(false, opText, "valid "), clientFrame(true, 0, opCont, true, []byte{0xff, 'x'})), closeCodes: []uint16{1007}},
		{name: "truncated utf8 at end of fragmented text", writes: oneWrite(mf(false, opText, "valid "), clientFrame(true, 0, opCont, true, []byte{0xe1, 0xbd})), closeCodes: []uint16{1007}},
		{
			// Fail fast: the first fragment holds an invalid prefix and the
			// message is never finished; the 1007 must come anyway.
			name:       "invalid utf8 prefix in an unfinished fragment",
			writes:     oneWrite(clientFrame(false, 0, opText, true, invalid)),
			closeCodes: []uint16{1007},
		},
		{
			// The same inside one frame whose payload never fully arrives.
			name:       "invalid utf8 prefix in an unfinished frame",
			writes:     oneWrite(clientFrame(true, 0, opText, true, append(bytes.Clone(invalid), make([]byte, 100)...))[:2+4+len(invalid)]),
			closeCodes: []uint16{1007},
		},
		{name: "invalid utf8 in binary is fine", writes: oneWrite(clientFrame(true, 0, opBinary, true, invalid)), want: []wantFrame{{op: opBinary, payload: invalid}}},
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf} {
		cases = append(cases, rawCase{
			name:       fmt.Sprintf("reserved opcode %#x", op),
			writes:     oneWrite(clientFrame(true, 0, op, true, []byte("x"))),
			closeCodes: []uint16{1002},
		})
	}
	runRawCases(t, e, cases)
}

func TestRFCMessageTooBig(t *testing.T) {
	opts := rfcOpts()
	opts.MaxMessageSize = 4096
	e := startEngine(t, opts, EchoHandler{})
	header := func(b []byte) []byte { return b[:2+2+4] } // a 16-bit length header
	cases := []rawCase{
		{name: "exactly the limit", writes: oneWrite(clientFrame(true, 0, opBinary, true, testPattern(4096))), want: []wantFrame{{op: opBinary, payload: testPattern(4096)}}},
		{name: "fragments summing to the limit", writes: oneWrite(clientFrame(false, 0, opBinary, true, testPattern(4096)[:3000]), clientFrame(true, 0, opCont, true, testPattern(4096)[3000:])), want: []wantFrame{{op: opBinary, payload: testPattern(4096)}}},
		{
			// The header alone must trigger 1009: the payload is never sent.
			name:       "single frame over the limit",
			writes:     oneWrite(header(clientFrame(true, 0, opBinary, true, testPattern(4097)))),
			closeCodes: []uint16{1009},
		},
		{name: "single frame over the limit, whole", writes: oneWrite(clientFrame(true, 0, opText, true, bytes.Repeat([]byte("a"), 4097))), closeCodes: []uint16{1009}},
		{name: "64-bit length far over the limit", writes: oneWrite([]byte{0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4}), closeCodes: []uint16{1009}},
		{
			name:       "fragments summing over the limit",
			writes:     oneWrite(clientFrame(false, 0, opBinary, true, testPattern(3000)), header(clientFrame(true, 0, opCont, true, testPattern(1097)))),
			closeCodes: []uint16{1009},
		},
		{
			name:       "many small fragments summing over the limit",
			writes:     oneWrite(clientFrame(false, 0, opText, true, bytes.Repeat([]byte("a"), 1000)), mf(false, opCont, strings.Repeat("b", 1000)), mf(false, opCont, strings.Repeat("c", 1000)), mf(false, opCont, strings.Repeat("d", 1000)), mf(false, opCont, strings.Repeat("e", 1000))),
			closeCodes: []uint16{1009},
		},
	}
	runRawCases(t, e, cases)
}

func TestRFCCloseHandshake(t *testing.T) {
	e := startEngine(t, rfcOpts(), EchoHandler{})
	cases := []rawCase{
		{name: "close 1000 bye", writes: oneWrite(mf(true, opClose, string(closePayload(1000, "bye")))), closeCodes: []uint16{1000}},
		{name: "close with empty payload", writes: oneWrite(mf(true, opClose, "")), closeCodes: []uint16{1005, 1000}},
		{name: "close with 1-byte payload", writes: oneWrite(clientFrame(true, 0, opClose, true, []byte{0x03})), closeCodes: []uint16{1002}},
		{name: "close with 123-byte reason", writes: oneWrite(clientFrame(true, 0, opClose, true, closePayload(1000, strings.Repeat("r", 123)))), closeCodes: []uint16{1000}},
		{name: "close reason invalid utf8", writes: oneWrite(clientFrame(true, 0, opClose, true, append(closePayload(1000, "ok"), 0xff, 0xfe))), closeCodes: []uint16{1007}},
		{
			name:       "data after close is not echoed",
			writes:     oneWrite(mf(true, opClose, string(closePayload(1000, ""))), mf(true, opText, "too late"), mf(true, opPing, "late")),
			closeCodes: []uint16{1000},
		},
		{
			name:       "close after an unfinished fragmented message",
			writes:     oneWrite(mf(false, opText, "half"), mf(true, opClose, string(closePayload(1001, "")))),
			closeCodes: []uint16{1001},
		},
		{
			name:       "echo then close in one write",
			writes:     oneWrite(mf(true, opText, "first"), mf(true, opClose, string(closePayload(1000, "")))),
			want:       []wantFrame{{op: opText, payload: []byte("first")}},
			closeCodes: []uint16{1000},
		},
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, rawCase{
			name:       fmt.Sprintf("invalid close code %d", code),
			writes:     oneWrite(clientFrame(true, 0, opClose, true, closePayload(code, ""))),
			closeCodes: []uint16{1002},
		})
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, rawCase{
			name:       fmt.Sprintf("valid close code %d echoed", code),
			writes:     oneWrite(clientFrame(true, 0, opClose, true, closePayload(code, "reason"))),
			closeCodes: []uint16{code},
		})
	}
	runRawCases(t, e, cases)

	t.Run("stats count received closes", func(t *testing.T) {
		before := sumStats(t, e).ClosesReceived
		c, _ := dialUpgraded(t, e)
		c.writeFrame(opClose, closePayload(1000, ""))
		c.expectClose(t, 1000)
		if got := sumStats(t, e).ClosesReceived; got != before+1 {
			t.Fatalf("ClosesReceived %d, want %d", got, before+1)
		}
	})
}

// TestRFCSplitFrames checks the decoder's partial-header and
// partial-payload paths over a real socket: writeSynced waits until the
// engine consumed each piece, so every split point really is a separate
// OnTraffic.
func TestRFCSplitFrames(t *testing.T) {
	e := startEngine(t, rfcOpts(), EchoHandler{})
	text := []byte(strings.Repeat("split frame é ", 15)) // 16-bit length form
	big := testPattern(70000)                            // 64-bit length form
	cases := []struct {
		name  string
		frame []byte
		cuts  []int // split offsets, ascending
		want  wantFrame
	}{
		{name: "7-bit header byte by byte", frame: mf(true, opText, "hello"), cuts: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, want: wantFrame{op: opText, payload: []byte("hello")}},
		{name: "16-bit length split", frame: clientFrame(true, 0, opText, true, text), cuts: []int{1, 2, 3, 5, 7, 8, 9, 100}, want: wantFrame{op: opText, payload: text}},
		{name: "64-bit length split", frame: clientFrame(true, 0, opBinary, true, big), cuts: []int{1, 2, 5, 9, 10, 12, 14, 15, 30000}, want: wantFrame{op: opBinary, payload: big}},
		{name: "control frame split", frame: mf(true, opPing, "split ping"), cuts: []int{1, 4, 7, 10}, want: wantFrame{op: opPong, payload: []byte("split ping")}},
		{name: "utf8 code point split across reads", frame: mf(true, opText, "κόσμε"), cuts: []int{7, 9, 12}, want: wantFrame{op: opText, payload: []byte("κόσμε")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialUpgraded(t, e)
			sent := sumStats(t, e).BytesIn
			prev := 0
			for _, cut := range append(tc.cuts, len(tc.frame)) {
				sent += uint64(cut - prev)
				c.writeSynced(e, tc.frame[prev:cut], sent)
				prev = cut
			}
			c.expectMessage(tc.want.op, tc.want.payload)
			c.writeFrame(opClose, closePayload(1000, ""))
			c.expectClose(t, 1000)
		})
	}

	t.Run("one byte per write", func(t *testing.T) {
		c, _ := dialUpgraded(t, e)
		msgs := catFrames(clientFrame(false, 0, opText, true, text[:100]), mf(true, opPing, "p"), clientFrame(true, 0, opCont, true, text[100:]))
		for i := range msgs {
			c.write(msgs[i : i+1])
		}
		c.expectMessage(opPong, []byte("p"))
		c.expectMessage(opText, text)
		c.writeFrame(opClose, closePayload(1000, ""))
		c.expectClose(t, 1000)
	})
}

// --- permessage-deflate ------------------------------------------------------

// deflateMsg compresses p as a client would for one message without context
// takeover: raw deflate, sync flush, the 00 00 ff ff tail stripped.
func deflateMsg(t testing.TB, p []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// inflateMsg decompresses one server message (no context takeover).
func inflateMsg(p []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
	defer r.Close()
	return io.ReadAll(r)
}

// expectDeflated reads one data message that may be compressed (RSV1) and
// checks its inflated payload.
func (c *rawClient) expectDeflated(op byte, wantPayload []byte) serverFrame {
	c.t.Helper()
	fr := c.readFrame()
	got := fr.payload
	if fr.rsv == rsv1 {
		var err error
		if got, err = inflateMsg(fr.payload); err != nil {
			c.t.Fatalf("inflate server frame: %v", err)
		}
	} else if fr.rsv != 0 {
		c.t.Fatalf("server frame with rsv %#x", fr.rsv)
	}
	if fr.op != op || !fr.fin || !bytes.Equal(got, wantPayload) {
		c.t.Fatalf("got %v inflated %.40q, want op %d %.40q", fr, got, op, wantPayload)
	}
	return fr
}

// deflateBomb is 10 MiB of zeros deflated at BestCompression, sync-flushed
// and without the 00 00 ff ff tail: about 10 KB on the wire. It is kept in
// testdata because compressing 10 MiB takes seconds under -race.
func deflateBomb(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/deflate-bomb-10MiB-zeros")
	if err != nil {
		t.Fatal(err)
	}
	// Check that it is what it claims to be, as far as is cheap: small on
	// the wire, and inflating to zeros well past the 64 KiB limit.
	r := flate.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\x00\x00\xff\xff")))
	head, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if len(b) > 16<<10 || err != nil || len(head) != 1<<20 || bytes.ContainsFunc(head, func(r rune) bool { return r != 0 }) {
		t.Fatalf("testdata bomb: %d bytes, inflates to %d (%v)", len(b), len(head), err)
	}
	return b
}

func TestRFCCompression(t *testing.T) {
	opts := rfcOpts()
	opts.Compress = true
	opts.MaxMessageSize = 64 << 10
	e := startEngine(t, opts, EchoHandler{})
	const offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
	long := []byte(strings.Repeat("compressed echo, ", 40))

	t.Run("negotiated", func(t *testing.T) {
		_, resp := dialUpgraded(t, e, offer)
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
			t.Fatalf("Sec-WebSocket-Extensions %q", ext)
		}
	})
	t.Run("not negotiated without an offer", func(t *testing.T) {
		c, resp := dialUpgraded(t, e)
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
			t.Fatalf("Sec-WebSocket-Extensions %q without an offer", ext)
		}
		c.write(clientFrame(true, rsv1, opText, true, deflateMsg(t, []byte("hi"), flate.BestSpeed)))
		c.expectClose(t, 1002)
	})
	t.Run("not negotiated when Compress is off", func(t *testing.T) {
		plain := startEngine(t, rfcOpts(), EchoHandler{})
		c, resp := dialUpgraded(t, plain, offer)
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
			t.Fatalf("Sec-WebSocket-Extensions %q with Compress off", ext)
		}
		c.write(clientFrame(true, rsv1, opText, true, deflateMsg(t, []byte("hi"), flate.BestSpeed)))
		c.expectClose(t, 1002)
	})

	cases := []struct {
		name   string
		writes [][]byte
		echo   []byte // inflated echo expected, nil: none
		close  uint16 // expected close code, 0: none
	}{
		{name: "short compressed text", writes: oneWrite(clientFrame(true, rsv1, opText, true, deflateMsg(t, []byte("Hello"), flate.BestSpeed))), echo: []byte("Hello")},
		{name: "long compressed text", writes: oneWrite(clientFrame(true, rsv1, opText, true, deflateMsg(t, long, flate.BestCompression))), echo: long},
		{name: "uncompressed frame on a deflate connection", writes: oneWrite(clientFrame(true, 0, opText, true, long)), echo: long},
		{
			name: "compressed message in two fragments",
			writes: func() [][]byte {
				z := deflateMsg(t, long, flate.BestSpeed)
				return oneWrite(clientFrame(false, rsv1, opText, true, z[:len(z)/2]), clientFrame(true, 0, opCont, true, z[len(z)/2:]))
			}(),
			echo: long,
		},
		{
			name: "RSV1 on a continuation frame",
			writes: func() [][]byte {
				z := deflateMsg(t, long, flate.BestSpeed)
				return oneWrite(clientFrame(false, rsv1, opText, true, z[:len(z)/2]), clientFrame(true, rsv1, opCont, true, z[len(z)/2:]))
			}(),
			close: 1002,
		},
		{name: "RSV1 on a continuation of an uncompressed message", writes: oneWrite(mf(false, opText, "a"), clientFrame(true, rsv1, opCont, true, []byte("b"))), close: 1002},
		{name: "RSV1 on ping", writes: oneWrite(clientFrame(true, rsv1, opPing, true, nil)), close: 1002},
		{name: "RSV1 on close", writes: oneWrite(clientFrame(true, rsv1, opClose, true, closePayload(1000, ""))), close: 1002},
		{name: "RSV2 with deflate", writes: oneWrite(clientFrame(true, rsv2, opText, true, []byte("x"))), close: 1002},
		{name: "decompression bomb", writes: oneWrite(clientFrame(true, rsv1, opBinary, true, deflateBomb(t))), close: 1009},
		{name: "corrupt deflate data", writes: oneWrite(clientFrame(true, rsv1, opBinary, true, []byte{0xff, 0xff, 0xff, 0xff, 0x00})), close: 1007},
		{name: "compressed invalid utf8", writes: oneWrite(clientFrame(true, rsv1, opText, true, deflateMsg(t, []byte{'a', 0xed, 0xa0, 0x80}, flate.BestSpeed))), close: 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialUpgraded(t, e, offer)
			for _, w := range tc.writes {
				c.write(w)
			}
			if tc.echo != nil {
				c.expectDeflated(opText, tc.echo)
			}
			if tc.close != 0 {
				c.expectClose(t, tc.close)
				return
			}
			c.writeFrame(opClose, closePayload(1000, ""))
			c.expectClose(t, 1000)
		})
	}

	t.Run("client context takeover", func(t *testing.T) {
		c, _ := dialUpgraded(t, e, offer)
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		for i := range 4 {
			msg := []byte(strings.Repeat(fmt.Sprintf("takeover %d ", i%2), 20))
			buf.Reset()
			_, _ = w.Write(msg)
			_ = w.Flush()
			c.write(clientFrame(true, rsv1, opText, true, bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})))
			c.expectDeflated(opText, msg)
		}
		c.writeFrame(opClose, closePayload(1000, ""))
		c.expectClose(t, 1000)
	})

	t.Run("server_max_window_bits=10 gets Huffman-only output", func(t *testing.T) {
		c, resp := dialUpgraded(t, e, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_max_window_bits")
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if !strings.Contains(ext, "server_max_window_bits=10") {
			t.Fatalf("Sec-WebSocket-Extensions %q", ext)
		}
		c.write(clientFrame(true, rsv1, opText, true, deflateMsg(t, long, flate.BestSpeed)))
		fr := c.expectDeflated(opText, long)
		if fr.rsv != rsv1 {
			t.Fatalf("echo of %d bytes not compressed", len(long))
		}
		// Huffman-only output has no back-references, so a 1 KiB window
		// is honoured; it is exactly what the frame package encodes.
		enc, err := frame.AppendDeflatedHuffman(nil, ws.OpText, long)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fr.payload, enc[frame.HeaderSize(len(fr.payload)):]) {
			t.Fatalf("server output is not the Huffman-only encoding")
		}
		c.writeFrame(opClose, closePayload(1000, ""))
		c.expectClose(t, 1000)
	})
}

// --- broadcast ------------------------------------------------------------------

func TestBroadcastHandler(t *testing.T) {
	e := startEngine(t, rfcOpts(), BroadcastHandler{})
	var conns []*websocket.Conn
	for range 3 {
		c, _, err := websocket.DefaultDialer.Dial(wsURL(e), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	// Every connection must be registered before the broadcast: wait until
	// all three upgrades are counted.
	checkFor(t, ioTimeout, func() error {
		if u := sumStats(t, e).Upgrades; u != 3 {
			return fmt.Errorf("%d upgrades", u)
		}
		return nil
	})
	for sender := range conns {
		msg := []byte(fmt.Sprintf("from %d", sender))
		if err := conns[sender].WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		for i, c := range conns {
			if i == sender {
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
			typ, got, err := c.ReadMessage()
			if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, msg) {
				t.Fatalf("receiver %d: %d %q %v, want %q", i, typ, got, err, msg)
			}
		}
	}
	// The senders never got their own messages: the next thing each one
	// reads is the echo of a ping, not a broadcast.
	for i, c := range conns {
		pong := make(chan string, 1)
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("check"), time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
		done := make(chan error, 1)
		go func() { _, got, err := c.ReadMessage(); done <- fmt.Errorf("message %q: %v", got, err) }()
		select {
		case s := <-pong:
			if s != "check" {
				t.Fatalf("conn %d: pong %q", i, s)
			}
		case err := <-done:
			t.Fatalf("conn %d got its own broadcast or an error: %v", i, err)
		}
		_ = c.Close()
		<-done
	}
}

// --- handler callbacks ------------------------------------------------------------

// closeRecorder echoes and reports OnOpen and OnClose.
type closeRecorder struct {
	EchoHandler
	opened chan uint64
	closed chan ws.StatusCode
}

func (h closeRecorder) OnOpen(c *Conn)                      { h.opened <- c.ID() }
func (h closeRecorder) OnClose(_ *Conn, code ws.StatusCode) { h.closed <- code }

// TestHandlerOnClose: OnClose runs once per upgraded connection with the
// code sent or received, 1006 when the TCP connection just went away, and
// never for a connection that did not upgrade; the state counters return
// to zero.
func TestHandlerOnClose(t *testing.T) {
	h := closeRecorder{opened: make(chan uint64, 16), closed: make(chan ws.StatusCode, 16)}
	e := startEngine(t, rfcOpts(), h)
	cases := []struct {
		name   string
		client func(t *testing.T, c *rawClient)
		code   ws.StatusCode
	}{
		{name: "client close 1000", code: 1000, client: func(t *testing.T, c *rawClient) {
			c.writeFrame(opClose, closePayload(1000, ""))
			c.expectClose(t, 1000)
		}},
		{name: "client close without code", code: ws.StatusNoStatusRcvd, client: func(t *testing.T, c *rawClient) {
			c.writeFrame(opClose, nil)
			c.expectCloseOneOf(t, 1005, 1000)
		}},
		{name: "protocol error", code: 1002, client: func(t *testing.T, c *rawClient) {
			c.write(clientFrame(true, 0, opText, false, []byte("unmasked")))
			c.expectClose(t, 1002)
		}},
		{name: "message too big", code: 1009, client: func(t *testing.T, c *rawClient) {
			c.write(clientFrame(true, 0, opBinary, true, testPattern(1<<17+1))[:14]) // the 64-bit length header alone
			c.expectClose(t, 1009)
		}},
		{name: "TCP connection dropped", code: 1006, client: func(t *testing.T, c *rawClient) {
			_ = c.conn.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialUpgraded(t, e)
			select {
			case <-h.opened:
			case <-time.After(ioTimeout):
				t.Fatal("no OnOpen")
			}
			tc.client(t, c)
			select {
			case code := <-h.closed:
				if code != tc.code {
					t.Fatalf("OnClose code %d, want %d", code, tc.code)
				}
			case <-time.After(ioTimeout):
				t.Fatal("no OnClose")
			}
		})
	}
	t.Run("no callbacks for a refused upgrade", func(t *testing.T) {
		c := dialRaw(t, e)
		c.write([]byte("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))
		if resp := c.readResponse(); resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		c.expectEOF(t, time.Second)
	})
	checkFor(t, ioTimeout, func() error {
		if n := e.OpenConns(); n != 0 {
			return fmt.Errorf("%d open connections", n)
		}
		s := sumStats(t, e)
		for st, n := range s.States {
			if n != 0 {
				return fmt.Errorf("%d connections counted in state %v", n, State(st))
			}
		}
		return nil
	})
	select {
	case id := <-h.opened:
		t.Fatalf("unexpected OnOpen of %d", id)
	case code := <-h.closed:
		t.Fatalf("unexpected OnClose %d", code)
	default:
	}
}
