package router

import (
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// The ack of a room message and of a publish carries mid, the gateway
// message id the receivers see (PROTOCOL.md section 3), in every encoding a
// sender speaks; standalone (ack at once) and with a backplane (ack once
// confirmed, from the ackQueue).
func TestIntegrationAckCarriesMessageID(t *testing.T) {
	for _, mode := range []string{"standalone", "backplane"} {
		t.Run(mode, func(t *testing.T) {
			var g, other *gateway
			if mode == "standalone" {
				g = startGateway(t, engine.Options{}, Options{RateMsgs: -1})
				other = g
			} else {
				g, other = twoInstances(t, Options{RateMsgs: -1})
			}
			recv := other.userWith(auth.Claims{Sub: "bob"}, dialOpts{})
			recv.join("chat")
			recv.subscribe("news")
			for _, proto := range []string{wire.SubprotocolJSON, wire.SubprotocolMsgpack} {
				alice := g.userWith(auth.Claims{Sub: "alice", Pub: []string{"news"}}, dialOpts{protocols: []string{proto}})
				alice.join("chat")
				for i := range 3 {
					alice.send(fmt.Sprintf(`{"type":"message","room":"chat","data":%d,"id":"m%d"}`, i, i))
					ack := alice.expect("ack")
					got := recv.expectDelivery("room", "chat", "alice")
					if ack["id"] != fmt.Sprintf("m%d", i) || ack["mid"] == nil || ack["mid"] != got["id"] {
						t.Fatalf("%s: ack %v for the message %v: want id m%d and mid equal to the message's id", proto, ack, got, i)
					}
					if _, ok := ack["seq"]; ok {
						t.Fatalf("%s: ack %v has a seq without history", proto, ack)
					}
				}
				alice.send(`{"type":"publish","channel":"news","data":"x","id":"p1"}`)
				got := recv.expectDelivery("channel", "news", "alice")
				ack := alice.expect("ack") // alice is not subscribed: no copy of her own
				if ack["id"] != "p1" || ack["mid"] != got["id"] {
					t.Fatalf("%s: publish ack %v for %v: want mid equal to the message's id", proto, ack, got)
				}
				alice.send(`{"type":"send","to":"bob","data":"dm","id":"s1"}`)
				got = recv.expectDelivery("to", "bob", "alice")
				ack = alice.expect("ack")
				if ack["id"] != "s1" || ack["mid"] == nil || ack["mid"] != got["id"] {
					t.Fatalf("%s: send ack %v for %v: want mid equal to the message's id", proto, ack, got)
				}
				alice.close()
			}
		})
	}
}
