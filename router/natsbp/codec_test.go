package natsbp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
	clientwire "github.com/wsgate/wsgate/wire"
)

// oracleWire is the payload as encoding/json sees it: the struct the
// backplane used before codec.go, kept as the fuzzers' reference (and the
// format of older instances, which the decoder must keep reading).
type oracleWire struct {
	Data     json.RawMessage `json:"data,omitempty"`
	From     string          `json:"from,omitempty"`
	Priority string          `json:"priority,omitempty"`
	Filter   json.RawMessage `json:"filter,omitempty"`
	ID       string          `json:"id,omitempty"`
	TS       int64           `json:"ts,omitempty"`
	Origin   string          `json:"origin,omitempty"`
}

// oracleStored is a stored room message as encoding/json sees it.
type oracleStored struct {
	oracleWire
	Conn uint64 `json:"conn,omitempty"`
}

// oracleDecode decodes p with encoding/json into the fields decodeMessage
// fills.
func oracleDecode(p []byte, stored bool) (oracleStored, error) {
	var o oracleStored
	var err error
	if stored {
		err = json.Unmarshal(p, &o)
	} else {
		err = json.Unmarshal(p, &o.oracleWire)
	}
	return o, err
}

// sameAsOracle reports how m differs from o ("" when it does not).
func sameAsOracle(m *message, o *oracleStored) string {
	switch {
	case !bytes.Equal(m.data, o.Data) || (m.data == nil) != (o.Data == nil):
		return "data " + strconv.Quote(string(m.data)) + " vs " + strconv.Quote(string(o.Data))
	case !bytes.Equal(m.filter, o.Filter) || (m.filter == nil) != (o.Filter == nil):
		return "filter " + strconv.Quote(string(m.filter)) + " vs " + strconv.Quote(string(o.Filter))
	case string(m.from) != o.From:
		return "from " + strconv.Quote(string(m.from)) + " vs " + strconv.Quote(o.From)
	case string(m.id) != o.ID:
		return "id " + strconv.Quote(string(m.id)) + " vs " + strconv.Quote(o.ID)
	case string(m.origin) != o.Origin:
		return "origin " + strconv.Quote(string(m.origin)) + " vs " + strconv.Quote(o.Origin)
	case string(m.priority) != o.Priority:
		return "priority " + strconv.Quote(string(m.priority)) + " vs " + strconv.Quote(o.Priority)
	case m.ts != o.TS:
		return "ts " + strconv.FormatInt(m.ts, 10) + " vs " + strconv.FormatInt(o.TS, 10)
	case m.conn != o.Conn:
		return "conn " + strconv.FormatUint(m.conn, 10) + " vs " + strconv.FormatUint(o.Conn, 10)
	}
	return ""
}

// withinLimits reports whether valid JSON p stays within the limits the
// decoder adds to encoding/json's: nesting at most 256, numbers that fit a
// float64.
func withinLimits(p []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				if depth++; depth > 256 {
					return false
				}
			} else {
				depth--
			}
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return false
			}
		}
	}
}

// backplaneSeeds are payloads of every kind the backplane meets: gateways'
// (this encoder's and encoding/json's), services', and encoding/json's
// corner cases.
var backplaneSeeds = []string{
	`{"data":{"text":"hello, world","n":42,"tags":["a","b"]},"from":"alice","id":"gw-1-3-1a2b","ts":1764748800123,"origin":"gw-1"}`,
	`{"data":{"a":"\u003c\u0026\u003e"},"from":"\u003cbob\u003e","priority":"high","filter":{"tag":"x","in":["a","b"]},"id":"gw-2-0-1","ts":1,"origin":"gw-2","conn":7}`,
	`{"data": [1, 2.5e3, -0, null, true] , "priority" : "low"}`,
	`{"data":1}`, `{"data":null}`, `{"data":1,"data":null}`, `null`, ` null `, `{}`, ` { } `,
	`{"from":"a","from":null}`, `{"from":1,"data":2}`, `{"DATA":2,"FROM":"x","Ts":3,"TS":4}`,
	"{\"t\u017f\":5}", `{"t\u017f":6}`, `{"d\u0061ta":[]}`, `{"ts":-0}`, `{"ts":1.0}`, `{"ts":1e3}`, `{"ts":"1"}`,
	`{"ts":9223372036854775807}`, `{"ts":9223372036854775808}`, `{"conn":18446744073709551615}`, `{"conn":-1}`,
	`{"from":"\ud83d\ude00 \ud800 \udc00x \u00e9"}`, "{\"from\":\"a\xffb\"}", "{\"id\":\"\xed\xa0\x80\"}",
	`{"data":1}x`, `{"data":1,}`, `{"data"}`, `[]`, `"x"`, `5`, `{"extra":{"deep":[[[{}]]]},"data":"ok"}`,
	`{"priority":"urgent"}`, `{"filter":null}`, `{"data":1e400}`, `{"unknown":1e400}`, "{\"x\":\"\t\"}",
}

func FuzzBackplaneDecode(f *testing.F) {
	for _, s := range backplaneSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, p []byte, stored bool) {
		var m message
		err := decodeMessage(p, &m, stored)
		o, oerr := oracleDecode(p, stored)
		switch {
		case err == nil && oerr != nil:
			t.Fatalf("decoded %q, encoding/json refuses it: %v", p, oerr)
		case err == nil:
			if diff := sameAsOracle(&m, &o); diff != "" {
				t.Fatalf("%q: %s (ours vs encoding/json)", p, diff)
			}
		case oerr == nil && withinLimits(p):
			t.Fatalf("refused %q (%v), encoding/json decodes it", p, err)
		}
	})
}

// FuzzBackplaneRoundTrip encodes a message with appendMessage and decodes
// it with both decoders; and decodes what encoding/json encodes (older
// instances) with ours.
func FuzzBackplaneRoundTrip(f *testing.F) {
	f.Add([]byte(`{"text":"hi"}`), "alice", "gw-1-0-1", "gw-1", int64(1764748800123), uint8(0), []byte(``), uint64(0))
	f.Add([]byte(`[1,"\u2028<&>"]`), "b\"o\\b\n", "", "", int64(-5), uint8(1), []byte(`{"tag":"a"}`), uint64(9))
	f.Add([]byte(` "x" `), "a\xffb\u2029", "\x00", "é", int64(0), uint8(2), []byte(`null`), uint64(1<<63))
	f.Fuzz(func(t *testing.T, data []byte, from, id, origin string, ts int64, pri uint8, filter []byte, conn uint64) {
		if len(data) > 0 && !clientwire.ValidJSON(data) {
			data = nil
		}
		if len(filter) > 0 && !clientwire.ValidJSON(filter) {
			filter = nil
		}
		rm := &router.Remote{Kind: router.KindRoom, Name: "r", Data: data, From: from, ID: id, Origin: origin, TS: ts,
			Priority: clientwire.Priority(pri % 3), Filter: filter}
		enc := appendMessage(nil, rm, conn)
		if !json.Valid(enc) {
			t.Fatalf("encoded invalid JSON %q", enc)
		}
		var m message
		if err := decodeMessage(enc, &m, true); err != nil {
			t.Fatalf("own payload %q: %v", enc, err)
		}
		o, err := oracleDecode(enc, true)
		if err != nil {
			t.Fatalf("encoding/json refuses %q: %v", enc, err)
		}
		if diff := sameAsOracle(&m, &o); diff != "" {
			t.Fatalf("%q: %s (ours vs encoding/json)", enc, diff)
		}
		if !bytes.Equal(m.data, trimJSONSpace(data)) || !bytes.Equal(m.filter, trimJSONSpace(filter)) || m.ts != ts || m.conn != conn {
			t.Fatalf("%q: data, filter, ts or conn changed", enc)
		}
		for _, s := range [][2]string{{string(m.from), from}, {string(m.id), id}, {string(m.origin), origin}} {
			if utf8.ValidString(s[1]) && s[0] != s[1] {
				t.Fatalf("%q: string %q came back as %q", enc, s[1], s[0])
			}
		}
		if pr, err := parsePriority(m.priority); err != nil || pr != rm.Priority {
			t.Fatalf("%q: priority %v came back as %q", enc, rm.Priority, m.priority)
		}
		// What an older instance (encoding/json) sends.
		ow := oracleStored{oracleWire: oracleWire{Data: data, From: from, Filter: filter, ID: id, TS: ts, Origin: origin}, Conn: conn}
		if rm.Priority != clientwire.PriorityNormal {
			ow.Priority = rm.Priority.String()
		}
		old, err := json.Marshal(&ow)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeMessage(old, &m, true); err != nil {
			t.Fatalf("encoding/json's payload %q: %v", old, err)
		}
		if o, err = oracleDecode(old, true); err != nil {
			t.Fatal(err)
		}
		if diff := sameAsOracle(&m, &o); diff != "" {
			t.Fatalf("%q: %s (ours vs encoding/json)", old, diff)
		}
	})
}

// TestBackplaneDecodeCases pins encoding/json's view on the cases that
// matter to services.
func TestBackplaneDecodeCases(t *testing.T) {
	bp := New(Options{})
	for _, c := range []struct {
		subject, payload string
		want             router.Remote
		fail             bool
	}{
		{subject: "gw.room.lobby", payload: `{"data":{"x":1},"from":"svc","priority":"high"}`,
			want: router.Remote{Kind: router.KindRoom, Name: "lobby", Data: []byte(`{"x":1}`), From: "svc", Priority: clientwire.PriorityHigh}},
		{subject: "gw.user.u1", payload: `{"Data":2,"FROM":"svc","unknown":{"a":[1]},"Priority":"low"}`,
			want: router.Remote{Kind: router.KindUser, Name: "u1", Data: []byte(`2`), From: "svc", Priority: clientwire.PriorityLow}},
		{subject: "gw.chan.c", payload: `{"filter":{"tag":"a"},"id":"gw-1-0-1","ts":5,"origin":"gw-1"}`,
			want: router.Remote{Kind: router.KindChannel, Name: "c", Data: []byte(`null`), Filter: []byte(`{"tag":"a"}`), ID: "gw-1-0-1", TS: 5, Origin: "gw-1"}},
		{subject: "gw.all", payload: `null`, want: router.Remote{Kind: router.KindAll, Data: []byte(`null`)}},
		{subject: "gw.all", payload: `{"from":"caf\u00e9 \ud83d\ude00","conn":"ignored here"}`,
			want: router.Remote{Kind: router.KindAll, Data: []byte(`null`), From: "café 😀"}},
		{subject: "gw.room.r", payload: "{\"T\u017f\":5,\"ORIGIN\":\"o\",\"Id\":\"i\",\"FiLtEr\":{},\"d\\u0041ta\":true}",
			want: router.Remote{Kind: router.KindRoom, Name: "r", Data: []byte(`true`), Filter: []byte(`{}`), ID: "i", TS: 5, Origin: "o"}},
		{subject: "gw.room.r", payload: `{"priority":"urgent"}`, fail: true},
		{subject: "gw.room.r", payload: `{"ts":"5"}`, fail: true},
		{subject: "gw.room.r", payload: `{"data":1} {}`, fail: true},
		{subject: "gw.room.r", payload: `[1]`, fail: true},
		{subject: "gw.nope.r", payload: `{}`, fail: true},
		{subject: "gw.room.r", payload: `{"data":[1e400]}`, fail: true},
		{subject: "gw.room.r", payload: `{"data":` + strings.Repeat("[", 257) + strings.Repeat("]", 257) + `}`, fail: true},
		{subject: "gw.room.r", payload: `{"data":` + strings.Repeat("[", 256) + strings.Repeat("]", 256) + `}`,
			want: router.Remote{Kind: router.KindRoom, Name: "r", Data: []byte(strings.Repeat("[", 256) + strings.Repeat("]", 256))}},
	} {
		var got router.Remote
		err := bp.decode(c.subject, []byte(c.payload), &got)
		if c.fail {
			if err == nil {
				t.Errorf("%s %s: decoded, want an error", c.subject, c.payload)
			}
			continue
		}
		if err != nil || got.Kind != c.want.Kind || got.Name != c.want.Name || string(got.Data) != string(c.want.Data) ||
			string(got.Filter) != string(c.want.Filter) || got.From != c.want.From || got.ID != c.want.ID || got.TS != c.want.TS ||
			got.Origin != c.want.Origin || got.Priority != c.want.Priority {
			t.Errorf("%s %s: got %+v, %v; want %+v", c.subject, c.payload, got, err, c.want)
		}
	}
}

// TestBackplaneCodecAllocs: publishing encodes and receiving decodes a
// typical message without allocating (the per-message path; nats.go's own
// copies aside).
func TestBackplaneCodecAllocs(t *testing.T) {
	m := benchRemote()
	buf := appendMessage(nil, m, 0)
	if n := testing.AllocsPerRun(1000, func() { buf = appendMessage(buf[:0], m, 0) }); n != 0 {
		t.Errorf("encode: %v allocations per message, want 0", n)
	}
	bp := New(Options{})
	delivered := 0
	bp.deliver = func(*router.Remote) { delivered++ }
	msg := &nats.Msg{Subject: "gw.room.lobby", Data: benchPayload}
	if n := testing.AllocsPerRun(1000, func() { bp.handle(msg, &bp.rxRemote) }); n != 0 {
		t.Errorf("receive: %v allocations per message, want 0", n)
	}
	if delivered == 0 || bp.decodeErrors.Load() != 0 {
		t.Fatalf("delivered %d, decode errors %d", delivered, bp.decodeErrors.Load())
	}
}
