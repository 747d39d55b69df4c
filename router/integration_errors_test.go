package router

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
)

// closeCase runs one way of getting closed and checks that the other
// connections are unaffected.
func closeWorld(t *testing.T, eo engine.Options) (g *gateway, a, b *tclient) {
	g = startGateway(t, eo, Options{})
	a, b = g.user("a"), g.user("b")
	a.join("r")
	b.join("r")
	return g, a, b
}

func stillWorks(t *testing.T, a, b *tclient) {
	t.Helper()
	a.send(`{"type":"message","room":"r","data":"still"}`)
	if m := b.expectDelivery("room", "r", "a"); m["data"] != "still" {
		t.Fatalf("%v", m)
	}
	a.alive()
	b.alive()
}

// 1000: a client's close is echoed with its code.
func TestIntegrationClose1000Echo(t *testing.T) {
	g, a, b := closeWorld(t, engine.Options{})
	c := g.user("c")
	c.join("r")
	c.sendRaw(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	c.expectClose(1000)
	stillWorks(t, a, b)
	eventually(t, "the closed member to leave the room", func() bool {
		a.send(`{"type":"presence","room":"r"}`)
		return len(a.expect("presence")["users"].([]any)) == 2
	})
}

// 1002: protocol errors (unmasked frame, reserved opcode, continuation
// without a start, fragmented control frame).
func TestIntegrationClose1002(t *testing.T) {
	g, a, b := closeWorld(t, engine.Options{})
	for _, wire := range [][]byte{
		{0x81, 0x02, 'h', 'i'},                                     // unmasked
		maskedFrame(0x3, []byte("x")),                              // reserved opcode
		maskedFrame(0x0, []byte("x")),                              // continuation without a start
		maskedFrameFin(false, 0x9, nil),                            // fragmented ping
		append([]byte{0xc1}, maskedFrame(0x1, []byte("x"))[1:]...), // RSV1 without deflate
	} {
		c := g.user("c")
		c.writeWire(wire)
		c.expectClose(1002)
		stillWorks(t, a, b)
	}
}

// 1007: invalid UTF-8 in a text message.
func TestIntegrationClose1007(t *testing.T) {
	g, a, b := closeWorld(t, engine.Options{})
	c := g.user("c")
	c.sendRaw(websocket.TextMessage, []byte("{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"))
	c.expectClose(1007)
	stillWorks(t, a, b)
	if s := g.engineStats(); s.CloseCount(1007) != 1 {
		t.Fatalf("1007 closes = %d", s.CloseCount(1007))
	}
}

// 1009: a message over -max-message-size, also when fragmented.
func TestIntegrationClose1009(t *testing.T) {
	g, a, b := closeWorld(t, engine.Options{MaxMessageSize: 1024})
	c := g.user("c")
	c.send(`{"type":"ping","pad":` + filler(1100) + `}`)
	c.expectClose(1009)
	stillWorks(t, a, b)
	d := g.user("d")
	part := []byte(`{"type":"ping","pad":"` + string(make([]byte, 0)))
	wire := maskedFrameFin(false, 0x1, part)
	for range 3 {
		wire = append(wire, maskedFrameFin(false, 0x0, []byte(filler(400)))...)
	}
	d.writeWire(wire)
	d.expectClose(1009)
	stillWorks(t, a, b)
}

// 4010: idle timeout (no data message for IdleTimeout, pings answered).
// Only bounds that a slow machine cannot break are checked here; the exact
// timings (data resets the idle clock, pings do not) are engine tests on a
// manual clock (engine/timer_test.go).
func TestIntegrationClose4010Idle(t *testing.T) {
	const idleTimeout = 300 * time.Millisecond
	g := startGateway(t, engine.Options{TickInterval: 10 * time.Millisecond, IdleTimeout: idleTimeout, PingInterval: 50 * time.Millisecond, PingTimeout: 5 * time.Second}, Options{})
	start := time.Now()
	idle := g.user("idle") // answers pings (gorilla's default handler), sends no data
	idle.expectClose(4010)
	if el := time.Since(start); el < idleTimeout-10*time.Millisecond {
		t.Fatalf("idle close after %v, before -idle-timeout %v", el, idleTimeout)
	}
	if s := g.engineStats(); s.PingsSent < 1 || s.CloseCount(4010) != 1 {
		t.Fatalf("pings sent %d, 4010 closes %d: want the idle client pinged (and answering) and closed once", s.PingsSent, s.CloseCount(4010))
	}
	// A fresh client is served as before.
	g.user("next").alive()
}

// 4010: missed pongs (the gateway's ping is not answered within PingTimeout).
// The polite client answers from its reader goroutine; PingTimeout is
// generous so a busy machine cannot make it miss.
func TestIntegrationClose4010PingTimeout(t *testing.T) {
	g := startGateway(t, engine.Options{TickInterval: 10 * time.Millisecond, PingInterval: 100 * time.Millisecond, PingTimeout: time.Second}, Options{})
	deaf := g.userWith(auth.Claims{Sub: "deaf"}, dialOpts{noPong: true})
	polite := g.user("polite") // gorilla answers pings by default
	deaf.expectClose(4010)
	// The polite client was pinged too (both were silent as long), and is open.
	eventually(t, "pings to both clients", func() bool { return g.engineStats().PingsSent >= 2 })
	polite.alive()
	if s := g.engineStats(); s.CloseCount(4010) != 1 {
		t.Fatalf("4010 closes %d, want 1 (the deaf client)", s.CloseCount(4010))
	}
}
