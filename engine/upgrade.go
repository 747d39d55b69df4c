package engine

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/wsgate/wsgate/frame"
)

// headerEnd is the blank line that ends an HTTP request head.
var headerEnd = []byte("\r\n\r\n")

// upgradeResult says what the loop must do after looking at inbound bytes of a
// connection that has not upgraded yet.
type upgradeResult uint8

const (
	upgradeNeedMore upgradeResult = iota // head incomplete: keep the bytes, wait
	upgradeDone                          // 101 queued; consumed bytes are the head
	upgradeRefused                       // an HTTP error response was queued; close after writing
)

// upgrader parses one upgrade request from a byte slice with gobwas/ws's
// header parser (never a blocking reader on the socket: the loop calls it only
// once the whole head is buffered). Instances are pooled: their hooks are
// bound once, so an upgrade allocates only what gobwas itself does.
type upgrader struct {
	u                ws.Upgrader
	reader           bytes.Reader
	out              *bytebufferpool.ByteBuffer
	req              Request
	conn             *Conn
	eng              *Engine
	deflate          frame.DeflateNegotiator
	sawUpgradeHeader bool
	status           int // our own refusal, written instead of gobwas's response
	reason           string
	protoBuf         [][]byte
}

var upgraderPool = sync.Pool{New: func() any { return newUpgrader() }}

func newUpgrader() *upgrader {
	up := &upgrader{}
	up.u = ws.Upgrader{
		OnRequest: up.onRequest,
		OnHost: func(host []byte) error {
			up.req.Host = host
			return nil
		},
		OnHeader:        up.onHeader,
		ProtocolCustom:  up.onProtocol,
		Negotiate:       up.negotiate,
		OnBeforeUpgrade: up.beforeUpgrade,
	}
	return up
}

// rw adapts the upgrader to the io.ReadWriter gobwas wants: reads come from
// the buffered head, writes go to a pooled response buffer.
type upgradeRW struct{ up *upgrader }

func (rw upgradeRW) Read(p []byte) (int, error)  { return rw.up.reader.Read(p) }
func (rw upgradeRW) Write(p []byte) (int, error) { return rw.up.out.Write(p) }

func (up *upgrader) reset() {
	up.req = Request{Protocols: up.protoBuf[:0]}
	up.conn, up.eng = nil, nil
	up.deflate = frame.DeflateNegotiator{}
	up.sawUpgradeHeader = false
	up.status, up.reason = 0, ""
}

func (up *upgrader) onRequest(uri []byte) error {
	path, query := uri, []byte(nil)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i+1:]
	}
	up.req.Path, up.req.Query = path, query
	if string(path) != up.eng.opts.WSPath {
		return up.refuse(http.StatusNotFound, "not found")
	}
	return nil
}

func (up *upgrader) onHeader(key, value []byte) error {
	switch {
	case bytes.EqualFold(key, []byte("Origin")):
		up.req.Origin = value
	case bytes.EqualFold(key, []byte("Authorization")):
		up.req.Authorization = value
	}
	return nil
}

// onProtocol records every offered subprotocol and selects none: the
// handler chooses in Accept, and the choice goes out as an extra header.
func (up *upgrader) onProtocol(v []byte) (string, bool) {
	ok := httphead.ScanTokens(v, func(tok []byte) bool {
		up.req.Protocols = append(up.req.Protocols, tok)
		return true
	})
	return "", ok
}

func (up *upgrader) negotiate(opt httphead.Option) (httphead.Option, error) {
	if !up.eng.opts.Compress {
		return httphead.Option{}, nil
	}
	return up.deflate.Negotiate(opt)
}

func (up *upgrader) beforeUpgrade() (ws.HandshakeHeader, error) {
	e := up.eng
	if e.draining.Load() {
		return nil, up.refuse(http.StatusServiceUnavailable, "shutting down")
	}
	if len(up.req.Origin) > 0 && !e.origins.allowed(up.req.Origin) {
		return nil, up.refuse(http.StatusForbidden, "origin not allowed")
	}
	if int(e.open.Load()) > e.opts.MaxConns {
		return nil, up.refuse(http.StatusServiceUnavailable, "server full")
	}
	d := e.handler.Accept(up.conn, &up.req)
	if d.Status != 0 {
		return nil, up.refuse(d.Status, d.Reason)
	}
	if d.Protocol != "" {
		return ws.HandshakeHeaderString("Sec-WebSocket-Protocol: " + d.Protocol + "\r\n"), nil
	}
	return ws.HandshakeHeaderString(""), nil
}

// refuse records our own status so the loop writes that response.
func (up *upgrader) refuse(status int, reason string) error {
	up.status, up.reason = status, reason
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

// upgrade looks at the inbound bytes of a connection in StateConnecting. On
// upgradeDone or upgradeRefused, n is the length of the request head and the
// response has been queued on c.
func (e *Engine) upgrade(c *Conn, in []byte) (res upgradeResult, n int) {
	// gnet keeps a partial head and hands it back whole with the next read:
	// search only what was not searched before (less the 3 bytes a CRLFCRLF
	// split across reads may have begun with), not the whole head again.
	from := max(int(c.headScanned())-(len(headerEnd)-1), 0)
	if from > len(in) {
		from = 0
	}
	end := bytes.Index(in[from:], headerEnd)
	if end < 0 {
		if len(in) > e.opts.MaxHeaderBytes {
			e.writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			return upgradeRefused, len(in)
		}
		c.setHeadScanned(len(in))
		return upgradeNeedMore, 0
	}
	c.setHeadScanned(0)
	n = from + end + len(headerEnd)
	if n > e.opts.MaxHeaderBytes {
		e.writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return upgradeRefused, n
	}
	head := in[:n]

	up := upgraderPool.Get().(*upgrader)
	defer func() {
		up.protoBuf = up.req.Protocols[:0]
		up.reset()
		upgraderPool.Put(up)
	}()
	up.reset()
	up.conn, up.eng = c, e
	up.req.RemoteAddr = c.remoteAddr()
	up.sawUpgradeHeader = hasHeader(head, "upgrade")
	up.reader.Reset(head)
	up.out = bytebufferpool.Get()
	defer bytebufferpool.Put(up.out)

	_, err := up.u.Upgrade(upgradeRW{up})
	switch {
	case err == nil:
		if params, ok := up.deflate.Accepted(); ok {
			c.enableDeflate(params)
		}
		c.flags |= flagHTTPHead
		c.write(up.out.B)
		return upgradeDone, n
	case up.status != 0:
		e.writeHTTPError(c, up.status, up.reason)
	case !up.sawUpgradeHeader && !errors.Is(err, ws.ErrMalformedRequest):
		// A well-formed HTTP request that is not an upgrade: 426. Bytes
		// that are not HTTP at all fall through to 400.
		e.writeHTTPError(c, http.StatusUpgradeRequired, "this endpoint speaks WebSocket only")
	default:
		status := http.StatusBadRequest
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && rej.StatusCode() != 0 {
			status = rej.StatusCode()
		}
		e.writeHTTPError(c, status, err.Error())
	}
	return upgradeRefused, n
}

// hasHeader reports whether the request head has a header named name
// (lower case), by a case-insensitive scan of line starts.
func hasHeader(head []byte, name string) bool {
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			return false
		}
		head = head[i+2:]
		if len(head) > len(name) && head[len(name)] == ':' && bytes.EqualFold(head[:len(name)], []byte(name)) {
			return true
		}
	}
	return false
}

// writeHTTPError queues a complete HTTP error response; the caller closes
// the connection after it is written.
func (e *Engine) writeHTTPError(c *Conn, status int, reason string) {
	b := bytebufferpool.Get()
	defer bytebufferpool.Put(b)
	b.B = append(b.B, "HTTP/1.1 "...)
	b.B = strconv.AppendInt(b.B, int64(status), 10)
	b.B = append(b.B, ' ')
	b.B = append(b.B, http.StatusText(status)...)
	b.B = append(b.B, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	if status == http.StatusUpgradeRequired {
		b.B = append(b.B, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"...)
	}
	b.B = append(b.B, "Content-Length: "...)
	b.B = strconv.AppendInt(b.B, int64(len(reason)+1), 10)
	b.B = append(b.B, "\r\n\r\n"...)
	b.B = append(b.B, reason...)
	b.B = append(b.B, '\n')
	c.flags |= flagHTTPHead
	c.write(b.B)
	c.loop.stats.Refusals[refusalIndex(status)]++
}

// headScanned is how many bytes of the request head were searched for its
// end without finding it. It lives in pingSent, which means nothing before
// the upgrade (StateConnecting only; reset to 0 once the head is complete).
func (c *Conn) headScanned() uint32 { return c.pingSent }

func (c *Conn) setHeadScanned(n int) { c.pingSent = uint32(n) }
