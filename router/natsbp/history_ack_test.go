package natsbp

import (
	"fmt"
	"testing"
)

// In history mode the ack of a room message carries the message's id (mid)
// and its stream sequence (seq), equal to what the receivers get and what a
// resume replays, so a sender recognises its own message in a replay
// (PROTOCOL.md section 3).
func TestHistoryAckCarriesMidAndSeq(t *testing.T) {
	ns := startJS(t, t.TempDir())
	a, _ := startGW(t, "a", histOpts(ns.ClientURL(), HistoryOptions{}))
	alice, bob := a.dial("alice"), a.dial("bob")
	alice.join("chat")
	bob.join("chat")
	a.waitSubscribed(4) // gw.all, gw.user.alice, gw.user.bob, gw.live.room.chat
	var acks []map[string]any
	for i := range 3 {
		alice.send(fmt.Sprintf(`{"type":"message","room":"chat","data":%d,"id":"m%d"}`, i, i))
		ack := alice.expect("ack")
		d := bob.expectRoomMsg("chat", 0)
		if ack["id"] != fmt.Sprintf("m%d", i) || ack["mid"] != d.id || ack["seq"] != float64(d.seq) {
			t.Fatalf("ack %v for %+v: want id m%d, mid %s, seq %d", ack, d, i, d.id, d.seq)
		}
		acks = append(acks, ack)
	}
	// A replay from 0 gives alice her own messages back with the same ids
	// and sequences as her acks.
	alice.send(`{"type":"resume","room":"chat","since":0}`)
	for _, ack := range acks {
		m := alice.expect("message")
		if m["id"] != ack["mid"] || m["seq"] != ack["seq"] {
			t.Fatalf("replayed %v, want the id and seq of ack %v", m, ack)
		}
	}
	alice.expect("resumed")
}
