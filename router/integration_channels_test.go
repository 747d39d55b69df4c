package router

import (
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Section 3 rows subscribe / unsubscribe / publish with the `pub` and
// `sub_channels` claims.
func TestIntegrationChannelSubscribePublish(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	pub := g.userWith(auth.Claims{Sub: "svc", Pub: []string{"prices.*", "news"}}, dialOpts{})
	s1 := g.userWith(auth.Claims{Sub: "s1", SubChannels: []string{"prices.**"}}, dialOpts{})
	s2 := g.user("s2") // no sub_channels claim: may subscribe to anything
	s2b := g.user("s2")
	s1.send(`{"type":"subscribe","channel":"prices.btc","id":"s"}`)
	if m := s1.expect("subscribed"); m["channel"] != "prices.btc" || m["id"] != "s" {
		t.Fatalf("subscribed %v", m)
	}
	s2.subscribe("prices.btc")
	s2.subscribe("prices.btc") // twice: harmless
	s2b.subscribe("news")

	pub.send(`{"type":"publish","channel":"prices.btc","data":{"p":1},"id":"p1"}`)
	if m := pub.expect("ack"); m["id"] != "p1" {
		t.Fatalf("ack %v", m)
	}
	for _, c := range []*tclient{s1, s2} {
		if m := c.expectDelivery("channel", "prices.btc", "svc"); m["data"].(map[string]any)["p"] != 1.0 {
			t.Fatalf("delivery %v", m)
		}
	}
	s2b.none(quiet) // subscribed to another channel only
	pub.send(`{"type":"publish","channel":"news","data":"n","priority":"high"}`)
	s2b.expectDelivery("channel", "news", "svc")
	pub.alive() // no ack without id
	s1.none(0)
	s2.none(0)
	// A publish with no subscriber is fine.
	pub.send(`{"type":"publish","channel":"prices.eth","data":1,"id":"p2"}`)
	pub.expect("ack")

	s2.send(`{"type":"unsubscribe","channel":"prices.btc","id":"u"}`)
	if m := s2.expect("unsubscribed"); m["channel"] != "prices.btc" || m["id"] != "u" {
		t.Fatalf("unsubscribed %v", m)
	}
	pub.send(`{"type":"publish","channel":"prices.btc","data":2}`)
	s1.expectDelivery("channel", "prices.btc", "svc")
	s2.alive()
	s2.none(quiet)
}

// Bad input for subscribe, unsubscribe and publish.
func TestIntegrationChannelBadInput(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	c := g.userWith(auth.Claims{Sub: "c", Pub: []string{"out.*"}, SubChannels: []string{"in.*"}}, dialOpts{})
	nopub := g.user("nopub") // no pub claim: may not publish anywhere
	sub := g.user("sub")
	sub.subscribe("out.x")
	sub.subscribe("other")
	cases := []struct {
		from      *tclient
		msg, code string
	}{
		{c, `{"id":"e","type":"subscribe"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"subscribe","channel":3}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"subscribe","channel":"sp ace"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"subscribe","channel":"out.x"}`, wire.CodeForbidden},
		{c, `{"id":"e","type":"subscribe","channel":"in.a.b"}`, wire.CodeForbidden},
		{c, `{"id":"e","type":"unsubscribe"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"unsubscribe","channel":"in.never"}`, wire.CodeNotJoined},
		{c, `{"id":"e","type":"publish","data":1}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":["out.x"],"data":1}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"other","data":1}`, wire.CodeForbidden},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":1,"filter":5}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":1,"filter":"eu"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":1,"filter":{"region":1}}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":1,"filter":{"tag":"region","in":["eu"],"x":"y"}}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":1,"priority":"max"}`, wire.CodeBadRequest},
		{c, `{"id":"e","type":"publish","channel":"out.x","data":{]}`, wire.CodeBadRequest},
		{nopub, `{"id":"e","type":"publish","channel":"other","data":1}`, wire.CodeForbidden},
		{nopub, `{"id":"e","type":"publish","channel":"out.x","data":1}`, wire.CodeForbidden},
	}
	for i, tc := range cases {
		tc.from.send(tc.msg)
		if e := tc.from.expectErr(tc.code); e["id"] != "e" {
			t.Fatalf("case %d %s: %v without id", i, tc.msg, e)
		}
		sub.none(0)
		// The connection keeps working and its publishes are delivered.
		tc.from.alive()
		c.send(fmt.Sprintf(`{"type":"publish","channel":"out.x","data":%d}`, i))
		if m := sub.expectDelivery("channel", "out.x", "c"); m["data"] != float64(i) {
			t.Fatalf("case %d: %v", i, m)
		}
	}
	c.subscribe("in.ok")
}

// Conditional routing: `filter` in both shapes against receivers' `tags`.
func TestIntegrationChannelFilter(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{})
	pub := g.userWith(auth.Claims{Sub: "pub", Pub: []string{"**"}}, dialOpts{})
	mk := func(name string, tags map[string]string, protocol string) *tclient {
		c := g.userWith(auth.Claims{Sub: name, Tags: tags}, dialOpts{protocols: []string{protocol}})
		c.subscribe("feed")
		return c
	}
	euGold := mk("eu-gold", map[string]string{"region": "eu", "tier": "gold"}, wire.SubprotocolJSON)
	usGold := mk("us-gold", map[string]string{"region": "us", "tier": "gold"}, wire.SubprotocolMsgpack)
	euFree := mk("eu-free", map[string]string{"region": "eu", "tier": "free"}, wire.SubprotocolMsgpack)
	untagged := mk("untagged", nil, wire.SubprotocolJSON)
	all := []*tclient{euGold, usGold, euFree, untagged}

	type tc struct {
		filter string
		want   []*tclient
	}
	cases := []tc{
		{`{"region":"eu"}`, []*tclient{euGold, euFree}},
		{`{"region":"eu","tier":"gold"}`, []*tclient{euGold}},
		{`{"tier":"gold"}`, []*tclient{euGold, usGold}},
		{`{"region":"ap"}`, nil},
		{`{"tag":"region","in":["us","ap"]}`, []*tclient{usGold}},
		{`{"in":["eu","us"],"tag":"region"}`, []*tclient{euGold, usGold, euFree}},
		{`{"tag":"tier","in":[]}`, nil},
		{`{}`, all},
		{`null`, all},
	}
	senders := []*tclient{pub, g.userWith(auth.Claims{Sub: "pub", Pub: []string{"**"}}, dialOpts{protocols: []string{wire.SubprotocolMsgpack}})}
	for si, s := range senders { // the filter is parsed in the sender's codec
		for i, c := range cases {
			s.send(fmt.Sprintf(`{"type":"publish","channel":"feed","data":%d,"filter":%s}`, i, c.filter))
		}
		s.send(`{"type":"publish","channel":"feed","data":"end"}`)
		for _, r := range all {
			var got []int
			for {
				m := r.expectDelivery("channel", "feed", "pub")
				if m["data"] == "end" {
					break
				}
				got = append(got, int(m["data"].(float64)))
			}
			var want []int
			for i, c := range cases {
				for _, w := range c.want {
					if w == r {
						want = append(want, i)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("sender %d, receiver %s: got cases %v, want %v", si, r.user, got, want)
			}
		}
	}
	// Filters on room messages are honoured the same way.
	for _, r := range all {
		r.join("room")
	}
	pub.join("room")
	pub.send(`{"type":"message","room":"room","data":"eu only","filter":{"region":"eu"}}`)
	pub.send(`{"type":"message","room":"room","data":"end"}`)
	for _, r := range all {
		m := r.expectDelivery("room", "room", "pub")
		if r == euGold || r == euFree {
			if m["data"] != "eu only" {
				t.Fatalf("%s: %v", r.user, m)
			}
			m = r.expectDelivery("room", "room", "pub")
		}
		if m["data"] != "end" {
			t.Fatalf("%s: %v", r.user, m)
		}
	}
}
