package harness

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/bench/loadclient"
	"github.com/wsgate/wsgate/bench/wsproto"
)

// The "json" codec speaks the gateway's router protocol (gw.json, text
// frames):
//
//	auth     ?token=<HS256 JWT> on the upgrade URL: one token per connection
//	         (sub "u<global id>", minted in the worker from CodecArgs
//	         "secret"), or one shared token (CodecArgs "token", sub "bench")
//	open     room mode: {"type":"join","room":R}; ready on "joined"
//	         p2p mode: nothing; ready on "auth:ok"
//	send     room: {"type":"message","room":R,"data":"<stamp>"}
//	         p2p:  {"type":"send","to":"u<K>","data":"<stamp>"}, K cycling
//	         over [recv_lo, recv_lo+recv_n)
//	receive  {"type":"message",...,"data":"<stamp>",...}: the stamp is found
//	         with one bytes.Index for `"data":"wsb1.` and 19 fixed digits;
//	         no encoding/json per delivery.
//
// The stamp is "wsb1.<intended send time, unix ns, 19 digits>.<seq, 16 hex>."
// padded with 'x' to the payload size (the size of data's string, not of
// the frame: the envelope adds ~100 bytes on the way out).
func init() {
	RegisterCodec("json", func(in *WorkerInit) Codec { return newJSONCodec(in) })
}

// MinJSONSize is the smallest stamp (data string) of the json codec.
const MinJSONSize = 5 + 19 + 1 + 16 + 1

var (
	stampKey    = []byte(`"data":"wsb1.`)
	typeJoined  = []byte(`"type":"joined"`)
	typeAuthOK  = []byte(`"type":"auth:ok"`)
	typeError   = []byte(`"type":"error"`)
	typeAckLike = [][]byte{[]byte(`"type":"ack"`), []byte(`"type":"pong"`), []byte(`"type":"user:joined"`), []byte(`"type":"user:left"`)}
)

type jsonCodec struct {
	p2p            bool
	room           string
	secret         []byte
	token          string
	recvLo, recvN  int
	next           int
	joinFrame      []byte
	prefix, suffix []byte
}

// one token per (secret, sub) per process: reconnects re-use it
var (
	tokMu    sync.Mutex
	tokCache = map[string]string{}
)

// MintToken returns an HS256 token for sub valid for a day (auth.MintHS256).
func MintToken(secret, sub string) (string, error) {
	tokMu.Lock()
	defer tokMu.Unlock()
	k := secret + "\x00" + sub
	if t, ok := tokCache[k]; ok {
		return t, nil
	}
	t, err := auth.MintHS256([]byte(secret), auth.Claims{Sub: sub}, 24*time.Hour)
	if err != nil {
		return "", err
	}
	tokCache[k] = t
	return t, nil
}

func newJSONCodec(in *WorkerInit) *jsonCodec {
	a := in.CodecArgs
	c := &jsonCodec{p2p: a["mode"] == "p2p", room: a["room"], secret: []byte(a["secret"]), token: a["token"]}
	if c.room == "" {
		c.room = "bench"
	}
	c.recvLo, _ = strconv.Atoi(a["recv_lo"])
	c.recvN, _ = strconv.Atoi(a["recv_n"])
	if c.recvN <= 0 {
		c.recvN = 1
	}
	c.next = in.Index * 7919
	c.joinFrame = []byte(`{"type":"join","room":"` + c.room + `"}`)
	if c.p2p {
		c.prefix = []byte(`{"type":"send","to":"u`)
	} else {
		c.prefix = []byte(`{"type":"message","room":"` + c.room + `","data":"`)
	}
	c.suffix = []byte(`"}`)
	return c
}

// Path puts the connection's token on the upgrade URL.
func (c *jsonCodec) Path(id int, sender bool) string {
	tok := c.token
	if tok == "" {
		var err error
		if tok, err = MintToken(string(c.secret), "u"+strconv.Itoa(id)); err != nil {
			tok = "mint-failed:" + err.Error()
		}
	}
	return "/ws?token=" + tok
}

func (c *jsonCodec) Open(cn *loadclient.Conn) {
	if !c.p2p {
		_ = cn.WriteMessage(wsproto.OpText, c.joinFrame)
	}
}

func (c *jsonCodec) Encode(dst []byte, intended int64, seq uint64, size int) []byte {
	dst = append(dst, c.prefix...)
	if c.p2p {
		dst = strconv.AppendInt(dst, int64(c.recvLo+c.next%c.recvN), 10)
		c.next++
		dst = append(dst, `","data":"`...)
	}
	dst = appendStamp(dst, intended, seq, size)
	return append(dst, c.suffix...)
}

func appendStamp(dst []byte, intended int64, seq uint64, size int) []byte {
	start := len(dst)
	dst = append(dst, "wsb1."...)
	var d [19]byte
	v := uint64(intended)
	for i := 18; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	dst = append(dst, d[:]...)
	dst = append(dst, '.')
	const hx = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst = append(dst, hx[(seq>>(4*uint(i)))&15])
	}
	dst = append(dst, '.')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseStamp finds the stamp (intended send time and seq) in a delivered message.
func parseStamp(p []byte) (int64, uint64, bool) {
	i := bytes.Index(p, stampKey)
	if i < 0 {
		return 0, 0, false
	}
	i += len(stampKey)
	if len(p) < i+19+1+16 {
		return 0, 0, false
	}
	var v int64
	for _, ch := range p[i : i+19] {
		if ch < '0' || ch > '9' {
			return 0, 0, false
		}
		v = v*10 + int64(ch-'0')
	}
	if p[i+19] != '.' {
		return 0, 0, false
	}
	var seq uint64
	for _, ch := range p[i+20 : i+36] {
		switch {
		case ch >= '0' && ch <= '9':
			seq = seq<<4 | uint64(ch-'0')
		case ch >= 'a' && ch <= 'f':
			seq = seq<<4 | uint64(ch-'a'+10)
		default:
			return 0, 0, false
		}
	}
	return v, seq, true
}

func (c *jsonCodec) Decode(p []byte) (int64, uint64, bool) { return parseStamp(p) }

func (c *jsonCodec) Control(cn *loadclient.Conn, p []byte) int {
	switch {
	case bytes.Contains(p, typeJoined):
		if !c.p2p {
			return CtlReady
		}
		return CtlIgnore
	case bytes.Contains(p, typeAuthOK):
		if c.p2p {
			return CtlReady
		}
		return CtlIgnore
	case bytes.Contains(p, typeError):
		return CtlError
	}
	for _, t := range typeAckLike {
		if bytes.Contains(p, t) {
			return CtlIgnore
		}
	}
	return CtlOther
}
