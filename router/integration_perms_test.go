package router

import (
	"context"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// grantsOf reads, on each loop, the token state the router keeps for every
// authenticated connection of user.
func (g *gateway) grantsOf(user string) []auth.Grant {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var out []auth.Grant
	for _, l := range g.eng.Loops() {
		got := make(chan []auth.Grant, 1)
		if !l.Post(engine.Task{Fn: func(l *engine.Loop, _ any) {
			var gs []auth.Grant
			for _, cl := range l.Data().(*shard).authed {
				if cl.user == user {
					gs = append(gs, cl.grant())
				}
			}
			got <- gs
		}}) {
			g.t.Fatal("loop refused the task")
		}
		select {
		case gs := <-got:
			out = append(out, gs...)
		case <-ctx.Done():
			g.t.Fatal("loop did not run the task")
		}
	}
	return out
}

func (g *gateway) grantOf(user string) auth.Grant {
	g.t.Helper()
	gs := g.grantsOf(user)
	if len(gs) != 1 {
		g.t.Fatalf("%d connections of %s, want 1", len(gs), user)
	}
	return gs[0]
}

// Connections whose tokens carry the same permissions share one
// auth.Permissions; a refresh swaps one connection's permissions and expiry
// and leaves the others sharing the old value as they were.
func TestIntegrationSharedPermissions(t *testing.T) {
	g := startGateway(t, engine.Options{}, Options{InstanceID: "inst-p"})
	ab := auth.Claims{Rooms: []string{"a", "b"}, RoomsSet: true, Tags: map[string]string{"plan": "pro"}}
	onlyA := auth.Claims{Rooms: []string{"a"}, RoomsSet: true, Tags: map[string]string{"plan": "pro"}}
	exp := time.Now().Unix() + 3600
	alice := g.connect(dialOpts{query: mintExp(t, withSub(ab, "alice"), exp)})
	alice.expect("auth:ok")
	bob := g.connect(dialOpts{query: mintExp(t, withSub(ab, "bob"), exp+7)})
	bob.expect("auth:ok")
	g.userWith(withSub(onlyA, "carol"), dialOpts{})

	ga, gb, gc := g.grantOf("alice"), g.grantOf("bob"), g.grantOf("carol")
	if ga.Perms != gb.Perms || ga.Perms == gc.Perms {
		t.Fatalf("alice and bob share: %v, alice and carol share: %v; want true, false", ga.Perms == gb.Perms, ga.Perms == gc.Perms)
	}
	if ga.Exp != exp || gb.Exp != exp+7 {
		t.Fatalf("exp alice %d bob %d, want %d %d", ga.Exp, gb.Exp, exp, exp+7)
	}
	alice.join("b")
	bob.join("b")

	// Alice narrows to carol's permissions: she leaves b, bob keeps it.
	alice.send(map[string]any{"type": "refresh", "token": mintExp(t, withSub(onlyA, "alice"), exp+60), "id": "r1"})
	if m := alice.expect("left"); m["room"] != "b" || m["reason"] != wire.LeftRevoked {
		t.Fatalf("left %v: want room b revoked", m)
	}
	if m := alice.expect("refreshed"); num(t, m, "exp") != exp+60 {
		t.Fatalf("refreshed %v: want exp %d", m, exp+60)
	}
	if ga2, gb2 := g.grantOf("alice"), g.grantOf("bob"); ga2.Perms != gc.Perms || gb2.Perms != gb.Perms || ga2.Exp != exp+60 || gb2.Exp != exp+7 {
		t.Fatalf("after alice's refresh: alice shares carol's %v, bob kept his %v, exp %d %d", ga2.Perms == gc.Perms, gb2.Perms == gb.Perms, ga2.Exp, gb2.Exp)
	}
	if rooms, _ := gb.Perms.Rooms(); len(rooms) != 2 {
		t.Fatalf("the shared value changed under bob: rooms %v", rooms)
	}
	alice.send(`{"type":"join","room":"b","id":"j"}`)
	alice.expectErr(wire.CodeForbidden)
	bob.send(`{"type":"leave","room":"b","id":"l"}`)
	bob.expect("left")
	bob.join("b")

	// And widens again, past bob: c is hers alone.
	abc := auth.Claims{Rooms: []string{"a", "b", "c"}, RoomsSet: true}
	alice.send(map[string]any{"type": "refresh", "token": mintExp(t, withSub(abc, "alice"), exp+120), "id": "r2"})
	if m := alice.expect("refreshed"); num(t, m, "exp") != exp+120 {
		t.Fatalf("refreshed %v: want exp %d", m, exp+120)
	}
	alice.join("c")
	bob.send(`{"type":"join","room":"c","id":"j"}`)
	bob.expectErr(wire.CodeForbidden)
	if ga3 := g.grantOf("alice"); ga3.Perms == gb.Perms || ga3.Perms == gc.Perms || ga3.Perms.Tags() != nil {
		t.Fatalf("after the second refresh alice's permissions %+v", ga3.Claims())
	}
}

func withSub(c auth.Claims, sub string) auth.Claims {
	c.Sub = sub
	return c
}
