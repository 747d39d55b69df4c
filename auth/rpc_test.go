package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestAuthRPCClaim: the `rpc` claim (method patterns) survives minting and
// verifying, absent allows every method, an empty list none, and a bad
// pattern refuses the token.
func TestAuthRPCClaim(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	verify := func(c Claims) Grant {
		t.Helper()
		tok, err := MintHS256(authTestSecret, c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify([]byte(tok))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := verify(Claims{Sub: "a"})
	limited := verify(Claims{Sub: "a", RPC: []string{"orders.*", "users.get"}})
	none := verify(Claims{Sub: "a", RPC: []string{}, RPCSet: true})
	for _, tt := range []struct {
		c      Grant
		method string
		want   bool
	}{
		{all, "orders.get", true},
		{all, "anything:at-all", true},
		{limited, "orders.get", true},
		{limited, "orders.get.v2", false},
		{limited, "users.get", true},
		{limited, "users.put", false},
		{none, "orders.get", false},
	} {
		if got := tt.c.MayRPC([]byte(tt.method)); got != tt.want {
			t.Errorf("%v MayRPC(%s) = %v, want %v", tt.c.Claims().RPC, tt.method, got, tt.want)
		}
	}
	tok := signTestToken(t, jwt.SigningMethodHS256, authTestSecret, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(time.Hour).Unix(), "rpc": []string{"a..b"}})
	if _, err := v.Verify([]byte(tok)); err == nil {
		t.Fatal("a bad rpc pattern was accepted")
	}
}
