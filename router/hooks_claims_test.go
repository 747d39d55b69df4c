package router

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
)

// TestConnectHookClaimsJSON: the claims the connect hook sends are the
// token's, every permission claim included (rpc was missing), and absent
// claims stay absent (an absent rooms claim allows every room; an empty one
// allows none).
func TestConnectHookClaimsJSON(t *testing.T) {
	secret := []byte("hook-claims-secret")
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		claims auth.Claims
		want   map[string]any
	}{
		{"all", auth.Claims{Sub: "alice", Rooms: []string{"lobby", "team-*"}, RoomsSet: true, Pub: []string{"news"},
			SubChannels: []string{"alerts"}, SubChannelsSet: true, RPC: []string{"svc.*"}, RPCSet: true,
			Tags: map[string]string{"plan": "pro"}, Admin: true},
			map[string]any{"sub": "alice", "rooms": []any{"lobby", "team-*"}, "pub": []any{"news"}, "sub_channels": []any{"alerts"},
				"rpc": []any{"svc.*"}, "tags": map[string]any{"plan": "pro"}, "admin": true}},
		{"empty sets", auth.Claims{Sub: "bob", RoomsSet: true, SubChannelsSet: true, RPCSet: true},
			map[string]any{"sub": "bob", "rooms": []any{}, "sub_channels": []any{}, "rpc": []any{}}},
		{"absent", auth.Claims{Sub: "carol"}, map[string]any{"sub": "carol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := auth.MintHS256(secret, tc.claims, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			g, err := v.Verify([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(appendClaimsJSON(nil, g), &got); err != nil {
				t.Fatal(err)
			}
			if _, ok := got["exp"].(float64); !ok {
				t.Fatalf("no exp in %v", got)
			}
			delete(got, "exp")
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("hook claims %v, want %v", got, tc.want)
			}
		})
	}
}
