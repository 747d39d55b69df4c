package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A tiny WebSocket client on a raw TCP socket, for conformance tests that
// need to send what no well-behaved library sends (unmasked frames, bad
// opcodes, split headers) and to see exactly what the server writes.

// WebSocket opcodes, as bytes for clientFrame.
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// rsv bits for clientFrame.
const (
	rsv1 byte = 0x40
	rsv2 byte = 0x20
	rsv3 byte = 0x10
)

// ioTimeout bounds every read of the raw client: nothing in these tests
// should take longer, so hitting it means the server hung.
const ioTimeout = 10 * time.Second // generous: only reached when something is wrong

// testKey is a valid Sec-WebSocket-Key (24 base64 characters).
const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeRequest is a valid upgrade request head for path with extra header
// lines ("Name: value", without CRLF).
func upgradeRequest(path string, extra ...string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\n")
	b.WriteString("Host: localhost\r\n")
	b.WriteString("Upgrade: websocket\r\n")
	b.WriteString("Connection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: " + testKey + "\r\n")
	b.WriteString("Sec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// clientFrame builds one client frame. rsv is any of rsv1|rsv2|rsv3; masked
// false produces the (illegal) unmasked form. The length uses the 7-, 16- or
// 64-bit form as RFC 6455 5.2 requires for len(payload).
func clientFrame(fin bool, rsv byte, op byte, masked bool, payload []byte) []byte {
	b0 := rsv&0x70 | op&0x0f
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i&3])
	}
	return out
}

// closePayload is a close frame's payload: code then reason.
func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// serverFrame is one frame read from the server.
type serverFrame struct {
	fin     bool
	rsv     byte // the three RSV bits, in place (0x70 mask)
	op      byte
	payload []byte
}

// closeCode is the code of a close frame (1005 when its payload is empty).
func (f serverFrame) closeCode() uint16 {
	if len(f.payload) < 2 {
		return 1005
	}
	return binary.BigEndian.Uint16(f.payload)
}

func (f serverFrame) closeReason() string {
	if len(f.payload) < 2 {
		return ""
	}
	return string(f.payload[2:])
}

func (f serverFrame) String() string {
	if f.op == opClose {
		return fmt.Sprintf("close(%d %q)", f.closeCode(), f.closeReason())
	}
	return fmt.Sprintf("frame(op=%d fin=%v rsv=%#x len=%d)", f.op, f.fin, f.rsv, len(f.payload))
}

// rawClient is one raw TCP connection to an engine.
type rawClient struct {
	t    testing.TB
	conn *net.TCPConn
	br   *bufio.Reader
}

// dialRaw opens a TCP connection (TCP_NODELAY on, so separate writes leave
// as separate segments) and closes it at the end of the test.
func dialRaw(t testing.TB, e *Engine) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.Addr(), ioTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetNoDelay(true)
	t.Cleanup(func() { _ = tc.Close() })
	return &rawClient{t: t, conn: tc, br: bufio.NewReaderSize(tc, 1<<16)}
}

// dialUpgraded dials and completes a valid upgrade with extra headers.
func dialUpgraded(t testing.TB, e *Engine, extra ...string) (*rawClient, *http.Response) {
	t.Helper()
	c := dialRaw(t, e)
	c.write([]byte(upgradeRequest(e.opts.WSPath, extra...)))
	resp := c.readResponse()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d, want 101", resp.StatusCode)
	}
	return c, resp
}

// write sends b in one Write call.
func (c *rawClient) write(b []byte) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// writeFrame sends one masked FIN frame.
func (c *rawClient) writeFrame(op byte, payload []byte) {
	c.t.Helper()
	c.write(clientFrame(true, 0, op, true, payload))
}

// readResponse reads an HTTP response head (and body, when it has a
// Content-Length) from the connection.
func (c *rawClient) readResponse() *http.Response {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp
}

// readFrameErr reads one server frame. Server frames must be unmasked.
func (c *rawClient) readFrameErr(timeout time.Duration) (serverFrame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{fin: h[0]&0x80 != 0, rsv: h[0] & 0x70, op: h[0] & 0x0f}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<26 {
		return f, fmt.Errorf("server frame length %d", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

// readFrame reads one server frame or fails the test.
func (c *rawClient) readFrame() serverFrame {
	c.t.Helper()
	f, err := c.readFrameErr(ioTimeout)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// expectMessage reads one frame and checks it is an unfragmented,
// uncompressed op message with payload want.
func (c *rawClient) expectMessage(op byte, want []byte) {
	c.t.Helper()
	f := c.readFrame()
	if f.op != op || !f.fin || f.rsv != 0 || !bytes.Equal(f.payload, want) {
		c.t.Fatalf("got %v payload %.40q, want op %d fin, %d bytes %.40q", f, f.payload, op, len(want), want)
	}
}

// expectClose reads frames until a close frame, asserts its code, then
// asserts that the server closes the TCP connection within a second.
// Pings and pongs before the close are skipped; a data frame fails the test.
func (c *rawClient) expectClose(t testing.TB, code uint16) serverFrame {
	t.Helper()
	return c.expectCloseOneOf(t, code)
}

// expectCloseOneOf is expectClose accepting any of codes (1005 stands for
// an empty close payload).
func (c *rawClient) expectCloseOneOf(t testing.TB, codes ...uint16) serverFrame {
	t.Helper()
	for {
		f, err := c.readFrameErr(ioTimeout)
		if err != nil {
			t.Fatalf("waiting for close %v: %v", codes, err)
		}
		if f.op != opClose {
			if f.op == opPing || f.op == opPong {
				continue
			}
			t.Fatalf("waiting for close %v: got %v", codes, f)
		}
		if got := f.closeCode(); !slices.Contains(codes, got) {
			t.Fatalf("close code %d (%q), want %v", got, f.closeReason(), codes)
		}
		c.expectEOF(t, time.Second)
		return f
	}
}

// expectEOF asserts the server closes the connection within d: a read
// returns EOF or a reset, never more data and never a timeout.
func (c *rawClient) expectEOF(t testing.TB, d time.Duration) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	n, err := c.br.Read(buf[:])
	switch {
	case n > 0:
		t.Fatalf("expected the server to close; got %d more bytes %q", n, buf[:n])
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		t.Fatalf("expected the server to close within %v: %v", d, err)
	}
}

// sumStats folds every loop's counters into one.
func sumStats(t testing.TB, e *Engine) LoopStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	// Fresh copies, waiting for each loop: tests compare counters before and
	// after an event, which Engine.Stats's tick-old fallback could miss.
	all, err := Collect(ctx, e.loops, func(l *Loop) LoopStats { return l.stats })
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	var s LoopStats
	for i := range all {
		s.Add(&all[i])
	}
	return s
}

// writeSynced writes b and waits until the engine has read all of it
// (the engine's BytesIn reaches want), so the next write arrives in a
// separate OnTraffic. Only for engines used by one connection at a time and
// for bytes after the upgrade (BytesIn counts a pending head only once it
// completes).
func (c *rawClient) writeSynced(e *Engine, b []byte, want uint64) {
	c.t.Helper()
	c.write(b)
	checkFor(c.t, ioTimeout, func() error {
		if got := sumStats(c.t, e).BytesIn; got < want {
			return fmt.Errorf("engine read %d bytes, want %d", got, want)
		}
		return nil
	})
}
