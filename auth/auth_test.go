package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type authKeys struct {
	rsa, rsa2       *rsa.PrivateKey
	ec              *ecdsa.PrivateKey
	rsaPEM, rsa1PEM []byte // PKIX and PKCS#1 encodings of rsa's public key
	ecPEM           []byte
}

var authKeysOnce = sync.OnceValues(func() (*authKeys, error) {
	k := &authKeys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		return nil, err
	}
	k.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	k.rsa1PEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	if der, err = x509.MarshalPKIXPublicKey(&k.ec.PublicKey); err != nil {
		return nil, err
	}
	k.ecPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return k, nil
})

func authTestKeys(t testing.TB) *authKeys {
	t.Helper()
	k, err := authKeysOnce()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signTestToken(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var authTestSecret = []byte("test-authTestSecret-0123456789abcdef0123")

func TestAuthVerifyValid(t *testing.T) {
	k := authTestKeys(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	full := jwt.MapClaims{"sub": "alice", "exp": exp.Unix(), "rooms": []string{"lobby", "chat.*"}, "pub": []string{"prices.**"},
		"sub_channels": []string{}, "tags": map[string]string{"region": "eu"}, "admin": true, "unknown": 1}
	want := &Claims{Sub: "alice", Exp: exp, Rooms: []string{"lobby", "chat.*"}, RoomsSet: true, Pub: []string{"prices.**"},
		SubChannels: []string{}, SubChannelsSet: true, Tags: map[string]string{"region": "eu"}, Admin: true}
	tests := []struct {
		name  string
		cfg   Config
		token string
	}{
		{name: "HS256", cfg: Config{Secret: authTestSecret}, token: signTestToken(t, jwt.SigningMethodHS256, authTestSecret, full)},
		{name: "RS256", cfg: Config{PublicKeyPEM: k.rsaPEM}, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa, full)},
		{name: "RS256 PKCS1", cfg: Config{PublicKeyPEM: k.rsa1PEM}, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa, full)},
		{name: "ES256", cfg: Config{PublicKeyPEM: k.ecPEM}, token: signTestToken(t, jwt.SigningMethodES256, k.ec, full)},
		{name: "both keys HS", cfg: Config{Secret: authTestSecret, PublicKeyPEM: k.rsaPEM}, token: signTestToken(t, jwt.SigningMethodHS256, authTestSecret, full)},
		{name: "both keys RS", cfg: Config{Secret: authTestSecret, PublicKeyPEM: k.rsaPEM}, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa, full)},
	}
	for _, tt := range tests {
		g, err := mustVerifier(t, tt.cfg).Verify([]byte(tt.token))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if c := g.Claims(); !reflect.DeepEqual(&c, want) {
			t.Errorf("%s: claims %+v, want %+v", tt.name, c, want)
		}
	}
	// Minimal claims: absent lists stay unset.
	v := mustVerifier(t, Config{Secret: authTestSecret})
	g, err := v.Verify([]byte(signTestToken(t, jwt.SigningMethodHS256, authTestSecret, jwt.MapClaims{"sub": "bob", "exp": exp.Unix(), "rooms": nil})))
	if err != nil {
		t.Fatal(err)
	}
	if c := g.Claims(); c.RoomsSet || c.Rooms != nil || c.Pub != nil || c.SubChannelsSet || c.Tags != nil || c.Admin {
		t.Fatalf("minimal claims: %+v", c)
	}
}

func TestAuthVerifyRejects(t *testing.T) {
	k := authTestKeys(t)
	future := time.Now().Add(time.Hour).Unix()
	ok := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": future}
		for key, v := range extra {
			if v == nil {
				delete(c, key)
			} else {
				c[key] = v
			}
		}
		return c
	}
	hs := func(extra jwt.MapClaims) string {
		return signTestToken(t, jwt.SigningMethodHS256, authTestSecret, ok(extra))
	}
	noneTok := signTestToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok(nil))
	good := hs(nil)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + jwtTestSegment(`{"sub":"admin","exp":9999999999}`) + "." + parts[2]
	unknownAlg := jwtTestSegment(`{"alg":"XX9","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]
	hsCfg := Config{Secret: authTestSecret}
	rsCfg := Config{PublicKeyPEM: k.rsaPEM}
	ecCfg := Config{PublicKeyPEM: k.ecPEM}
	tests := []struct {
		name  string
		cfg   Config
		token string
		err   error
	}{
		{name: "empty", cfg: hsCfg, token: "", err: ErrNoToken},
		{name: "garbage", cfg: hsCfg, token: "not-a-jwt", err: ErrMalformedToken},
		{name: "bad base64", cfg: hsCfg, token: "a.b.c", err: ErrMalformedToken},
		{name: "alg none", cfg: hsCfg, token: noneTok, err: ErrAlgNotAllowed},
		{name: "alg none to RS", cfg: rsCfg, token: noneTok, err: ErrAlgNotAllowed},
		{name: "unknown alg", cfg: hsCfg, token: unknownAlg, err: ErrAlgNotAllowed},
		{name: "HS384 with authTestSecret", cfg: hsCfg, token: signTestToken(t, jwt.SigningMethodHS384, authTestSecret, ok(nil)), err: ErrAlgNotAllowed},
		{name: "HS/RS confusion", cfg: rsCfg, token: signTestToken(t, jwt.SigningMethodHS256, k.rsaPEM, ok(nil)), err: ErrAlgNotAllowed},
		{name: "HS/RS confusion, both keys", cfg: Config{Secret: authTestSecret, PublicKeyPEM: k.rsaPEM},
			token: signTestToken(t, jwt.SigningMethodHS256, k.rsaPEM, ok(nil)), err: ErrBadSignature},
		{name: "RS to HS verifier", cfg: hsCfg, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa, ok(nil)), err: ErrAlgNotAllowed},
		{name: "ES to RS verifier", cfg: rsCfg, token: signTestToken(t, jwt.SigningMethodES256, k.ec, ok(nil)), err: ErrAlgNotAllowed},
		{name: "RS to ES verifier", cfg: ecCfg, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa, ok(nil)), err: ErrAlgNotAllowed},
		{name: "PS256 to RS verifier", cfg: rsCfg, token: signTestToken(t, jwt.SigningMethodPS256, k.rsa, ok(nil)), err: ErrAlgNotAllowed},
		{name: "wrong authTestSecret", cfg: hsCfg, token: signTestToken(t, jwt.SigningMethodHS256, []byte("other"), ok(nil)), err: ErrBadSignature},
		{name: "tampered", cfg: hsCfg, token: tampered, err: ErrBadSignature},
		{name: "other RSA key", cfg: rsCfg, token: signTestToken(t, jwt.SigningMethodRS256, k.rsa2, ok(nil)), err: ErrBadSignature},
		{name: "expired", cfg: hsCfg, token: hs(jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), err: ErrTokenExpired},
		{name: "not yet", cfg: hsCfg, token: hs(jwt.MapClaims{"nbf": future}), err: ErrTokenNotYet},
		{name: "missing exp", cfg: hsCfg, token: hs(jwt.MapClaims{"exp": nil}), err: ErrMissingExp},
		{name: "exp string", cfg: Config{Secret: authTestSecret, AllowNoExp: true}, token: hs(jwt.MapClaims{"exp": "tomorrow"}), err: ErrBadClaims},
		{name: "missing sub", cfg: hsCfg, token: hs(jwt.MapClaims{"sub": nil}), err: ErrMissingSub},
		{name: "empty sub", cfg: hsCfg, token: hs(jwt.MapClaims{"sub": ""}), err: ErrMissingSub},
		{name: "sub number", cfg: hsCfg, token: hs(jwt.MapClaims{"sub": 42}), err: ErrBadClaims},
		{name: "sub bad name", cfg: hsCfg, token: hs(jwt.MapClaims{"sub": "a b"}), err: ErrBadSub},
		{name: "rooms string", cfg: hsCfg, token: hs(jwt.MapClaims{"rooms": "lobby"}), err: ErrBadClaims},
		{name: "rooms numbers", cfg: hsCfg, token: hs(jwt.MapClaims{"rooms": []any{"a", 1}}), err: ErrBadClaims},
		{name: "rooms bad pattern", cfg: hsCfg, token: hs(jwt.MapClaims{"rooms": []string{"a b"}}), err: ErrBadClaims},
		{name: "pub object", cfg: hsCfg, token: hs(jwt.MapClaims{"pub": map[string]any{}}), err: ErrBadClaims},
		{name: "sub_channels bool", cfg: hsCfg, token: hs(jwt.MapClaims{"sub_channels": true}), err: ErrBadClaims},
		{name: "tags list", cfg: hsCfg, token: hs(jwt.MapClaims{"tags": []string{"a"}}), err: ErrBadClaims},
		{name: "tags number value", cfg: hsCfg, token: hs(jwt.MapClaims{"tags": map[string]any{"a": 1}}), err: ErrBadClaims},
		{name: "admin string", cfg: hsCfg, token: hs(jwt.MapClaims{"admin": "yes"}), err: ErrBadClaims},
	}
	for _, tt := range tests {
		_, err := mustVerifier(t, tt.cfg).Verify([]byte(tt.token))
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
	}
}

func jwtTestSegment(s string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func TestAuthVerifyExpOptions(t *testing.T) {
	past := time.Now().Add(-10 * time.Second).Unix()
	tok := []byte(signTestToken(t, jwt.SigningMethodHS256, authTestSecret, jwt.MapClaims{"sub": "a", "exp": past}))
	if _, err := mustVerifier(t, Config{Secret: authTestSecret, Leeway: time.Minute}).Verify(tok); err != nil {
		t.Errorf("expired within leeway: %v", err)
	}
	noExp := []byte(signTestToken(t, jwt.SigningMethodHS256, authTestSecret, jwt.MapClaims{"sub": "a"}))
	g, err := mustVerifier(t, Config{Secret: authTestSecret, AllowNoExp: true}).Verify(noExp)
	if err != nil || g.Exp != 0 || !g.ExpTime().IsZero() {
		t.Errorf("AllowNoExp: %+v %v", g, err)
	}
	if _, err := mustVerifier(t, Config{Secret: authTestSecret, AllowNoExp: true}).Verify(tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("AllowNoExp must still reject an expired exp: %v", err)
	}
}

func TestAuthNewVerifierErrors(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	for name, cfg := range map[string]Config{
		"nothing":            {},
		"not PEM":            {PublicKeyPEM: []byte("hello")},
		"bad DER":            {PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})},
		"private":            {PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})},
		"RSA 1024":           {PublicKeyPEM: pemOf(&small.PublicKey)},
		"EC P-384":           {PublicKeyPEM: pemOf(&p384.PublicKey)},
		"bad authTestSecret": {Secret: []byte{}, PublicKeyPEM: []byte("x")},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTokenMintHS256(t *testing.T) {
	v := mustVerifier(t, Config{Secret: authTestSecret})
	in := Claims{Sub: "alice", Rooms: []string{"lobby", "chat.*"}, Pub: []string{"p.*"}, SubChannelsSet: true,
		Tags: map[string]string{"region": "eu"}, Admin: true}
	tok, err := MintHS256(authTestSecret, in, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g, err := v.Verify([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	c := g.Claims()
	if c.Sub != "alice" || !c.RoomsSet || len(c.Rooms) != 2 || !c.SubChannelsSet || len(c.SubChannels) != 0 ||
		c.Tags["region"] != "eu" || !c.Admin || time.Until(c.Exp) < 59*time.Minute {
		t.Fatalf("round trip: %+v", c)
	}
	if g.MaySubscribe([]byte("anything")) {
		t.Fatal("empty sub_channels must allow nothing")
	}
	noExp, err := MintHS256(authTestSecret, Claims{Sub: "bob"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]byte(noExp)); !errors.Is(err, ErrMissingExp) {
		t.Fatalf("token without exp: %v", err)
	}
	for name, c := range map[string]Claims{"no sub": {}, "bad sub": {Sub: "a b"}, "bad room": {Sub: "a", Rooms: []string{"a b"}}} {
		if _, err := MintHS256(authTestSecret, c, time.Hour); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
	if _, err := MintHS256(nil, Claims{Sub: "a"}, time.Hour); err == nil {
		t.Error("minted without a authTestSecret")
	}
}

func TestAuthClaimsPermissions(t *testing.T) {
	all := &Claims{Sub: "a"}
	limited := &Claims{Sub: "a", Rooms: []string{"lobby", "chat.*"}, RoomsSet: true, Pub: []string{"prices.**", "news"},
		SubChannels: []string{"prices.*"}, SubChannelsSet: true}
	locked := &Claims{Sub: "a", Rooms: []string{}, RoomsSet: true, SubChannels: []string{}, SubChannelsSet: true}
	tests := []struct {
		c                     *Claims
		name                  string
		join, publish, subscr bool
	}{
		{c: all, name: "lobby", join: true, subscr: true},
		{c: all, name: "x.y.z", join: true, subscr: true},
		{c: limited, name: "lobby", join: true},
		{c: limited, name: "chat.general", join: true},
		{c: limited, name: "chat.a.b"},
		{c: limited, name: "news", publish: true},
		{c: limited, name: "prices.btc", publish: true, subscr: true},
		{c: limited, name: "prices.btc.usd", publish: true},
		{c: locked, name: "lobby"},
	}
	for _, tt := range tests {
		n := []byte(tt.name)
		if got := tt.c.MayJoin(n); got != tt.join {
			t.Errorf("%+v MayJoin(%s) = %v", tt.c, n, got)
		}
		if got := tt.c.MayPublish(n); got != tt.publish {
			t.Errorf("%+v MayPublish(%s) = %v", tt.c, n, got)
		}
		if got := tt.c.MaySubscribe(n); got != tt.subscr {
			t.Errorf("%+v MaySubscribe(%s) = %v", tt.c, n, got)
		}
	}
	if a := testing.AllocsPerRun(20, func() { limited.MayJoin([]byte("chat.general")) }); a != 0 {
		t.Errorf("MayJoin allocates %.1f", a)
	}
}

func BenchmarkAuthVerifyHS256(b *testing.B) {
	v := mustVerifier(b, Config{Secret: authTestSecret})
	tok := []byte(signTestToken(b, jwt.SigningMethodHS256, authTestSecret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"rooms": []string{"lobby", "chat.*"}}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
