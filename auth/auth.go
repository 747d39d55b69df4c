package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsgate/wsgate/wire"
)

// This file verifies the JWTs of PROTOCOL.md section 2 and turns their claims
// into the permission checks the router makes on join, publish and subscribe.
//
// The algorithm is pinned by the configured key, never taken from the token:
// a secret admits only HS256, an RSA public key only RS256, an EC P-256 key
// only ES256. That closes `alg: none` and the HS/RS confusion attack (a token
// "signed" with HS256 using the public key as the HMAC secret). Both a secret
// and a key may be configured at once (for a migration); each algorithm is
// then checked with its own key only.
//
// A Verifier's configuration is immutable after NewVerifier and it is safe
// for concurrent use; its only mutable part is the intern table of shared
// Permissions (intern.go), under its own short mutex. Verification
// allocates (JSON claims, big-number math); it runs once per connection,
// not per message.

// Config configures a Verifier.
type Config struct {
	Secret       []byte        // HS256 secret (-jwt-secret)
	PublicKeyPEM []byte        // RSA or EC P-256 public key, PKIX, PKCS#1 or certificate PEM (-jwt-public-key)
	AllowNoExp   bool          // accept tokens without exp (-jwt-allow-no-exp)
	Leeway       time.Duration // clock skew allowed on exp and nbf
}

// Auth errors; their text becomes the auth:fail reason (or the 401 body).
// Claim errors wrap ErrBadClaims with the offending claim.
var (
	ErrNoToken        = errors.New("missing token")
	ErrMalformedToken = errors.New("malformed token")
	ErrAlgNotAllowed  = errors.New("algorithm not allowed")
	ErrBadSignature   = errors.New("bad signature")
	ErrTokenExpired   = errors.New("token expired")
	ErrTokenNotYet    = errors.New("token not valid yet")
	ErrMissingExp     = errors.New("missing exp")
	ErrMissingSub     = errors.New("missing sub")
	ErrBadSub         = errors.New("bad sub: user ids are 1-128 bytes of [A-Za-z0-9_.:-]")
	ErrBadClaims      = errors.New("bad claims")
	ErrInvalidToken   = errors.New("invalid token")
)

// Verifier checks tokens against the configured key(s).
type Verifier struct {
	secret  []byte
	rsaKey  *rsa.PublicKey
	ecKey   *ecdsa.PublicKey
	methods []string
	parser  *jwt.Parser
	perms   *permTable // Permissions shared between tokens (intern.go)
}

// NewVerifier builds a Verifier. It fails when neither a secret nor a public
// key is given, when the PEM holds no usable key, or for RSA keys under 2048
// bits and EC curves other than P-256.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{perms: newPermTable(maxInterned)}
	if len(cfg.Secret) > 0 {
		v.secret = append([]byte(nil), cfg.Secret...)
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeyPEM) > 0 {
		key, err := parsePublicKeyPEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return nil, errors.New("auth: RSA public key shorter than 2048 bits")
			}
			v.rsaKey = k
			v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, errors.New("auth: EC public key must be on P-256 (ES256)")
			}
			v.ecKey = k
			v.methods = append(v.methods, jwt.SigningMethodES256.Alg())
		default:
			return nil, fmt.Errorf("auth: unsupported public key type %T (want RSA or EC P-256)", key)
		}
	}
	if len(v.methods) == 0 {
		return nil, errors.New("auth: JWT verification needs a secret or a public key")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithLeeway(cfg.Leeway)}
	if !cfg.AllowNoExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func parsePublicKeyPEM(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("auth: public key file holds no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: bad public key: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: bad RSA public key: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: bad certificate: %w", err)
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("auth: PEM block %q is not a public key", block.Type)
}

// keyFor hands jwt the key of the token's algorithm, after the parser has
// already checked that algorithm against v.methods.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case "HS256":
		if v.secret != nil {
			return v.secret, nil
		}
	case "RS256":
		if v.rsaKey != nil {
			return v.rsaKey, nil
		}
	case "ES256":
		if v.ecKey != nil {
			return v.ecKey, nil
		}
	}
	return nil, ErrAlgNotAllowed
}

func (v *Verifier) allowed(alg string) bool {
	for _, m := range v.methods {
		if m == alg {
			return true
		}
	}
	return false
}

// Claims are the contents of a token in one flat value: what MintHS256
// signs, and Grant.Claims's view of a verified token. Pattern lists hold
// glob patterns for MatchPattern. Rooms and SubChannels: unset means
// everything is allowed, set (even to an empty list) means only what
// matches. Pub: nil or empty means nothing may be published. Admin is
// carried for the caller; the May* checks do not consult it. Verify
// returns a Grant instead, whose permission part is shared (grant.go).
type Claims struct {
	Sub            string
	Exp            time.Time // zero when the token has no exp
	Rooms          []string
	RoomsSet       bool
	Pub            []string
	SubChannels    []string
	SubChannelsSet bool
	// RPC holds the method patterns of claim `rpc`; RPCSet is false when
	// the claim is absent (every method allowed).
	RPC    []string
	RPCSet bool
	Tags   map[string]string
	Admin  bool
}

// MayJoin reports whether the user may join room (claim `rooms`).
func (c *Claims) MayJoin(room []byte) bool { return allowedBy(c.Rooms, c.RoomsSet, room) }

// MayPublish reports whether the user may publish to channel (claim `pub`).
func (c *Claims) MayPublish(channel []byte) bool { return matchAny(c.Pub, channel) }

// MaySubscribe reports whether the user may subscribe to channel (claim
// `sub_channels`).
func (c *Claims) MaySubscribe(channel []byte) bool {
	return allowedBy(c.SubChannels, c.SubChannelsSet, channel)
}

// MayRPC reports whether the user may call the service method (claim
// `rpc`; absent allows every method).
func (c *Claims) MayRPC(method []byte) bool { return allowedBy(c.RPC, c.RPCSet, method) }

// allowedBy is the rule of the list claims that allow everything when
// absent (rooms, sub_channels, rpc): unset allows every name, set (even to
// an empty list) only the names a pattern matches. Claims and Permissions
// both decide with it.
func allowedBy(patterns []string, set bool, name []byte) bool {
	return !set || matchAny(patterns, name)
}

// Verify checks token's signature, algorithm, exp and nbf and decodes its
// claims into a Grant whose Permissions are shared with every other token
// carrying the same permission claims (intern.go). The returned error is
// one of the Err* values above (possibly wrapped with detail); its text is
// fit to send as the auth:fail reason.
func (v *Verifier) Verify(token []byte) (Grant, error) {
	if len(token) == 0 {
		return Grant{}, ErrNoToken
	}
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(string(token), mc, v.keyFor)
	if err != nil {
		return Grant{}, v.describe(tok, err)
	}
	return v.grantFromMap(mc)
}

// describe maps jwt's errors to the stable reasons clients see.
func (v *Verifier) describe(tok *jwt.Token, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformedToken
	case tok != nil && (tok.Method == nil || !v.allowed(tok.Method.Alg())):
		return ErrAlgNotAllowed
	case errors.Is(err, ErrAlgNotAllowed):
		return ErrAlgNotAllowed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrMissingExp
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrTokenNotYet
	case errors.Is(err, jwt.ErrInvalidType):
		return fmt.Errorf("%w: exp, nbf and iat must be numbers", ErrBadClaims)
	}
	return ErrInvalidToken
}

// grantFromMap checks the claims (sub, exp, the permission claims in the
// order rooms, pub, sub_channels, rpc, tags, then admin; the first bad one
// is the error) and builds the Grant, its Permissions from the intern table
// when another token already has the same ones.
func (v *Verifier) grantFromMap(mc jwt.MapClaims) (Grant, error) {
	var g Grant
	switch sub := mc["sub"].(type) {
	case nil:
		return Grant{}, ErrMissingSub
	case string:
		if sub == "" {
			return Grant{}, ErrMissingSub
		}
		if !wire.ValidName([]byte(sub)) {
			return Grant{}, ErrBadSub
		}
		g.Sub = sub
	default:
		return Grant{}, fmt.Errorf("%w: sub must be a string", ErrBadClaims)
	}
	exp, err := mc.GetExpirationTime()
	if err != nil {
		return Grant{}, fmt.Errorf("%w: exp must be a number", ErrBadClaims)
	}
	if exp != nil {
		// jwt keeps exp at whole seconds (jwt.TimePrecision), so Unix loses
		// nothing.
		g.Exp = exp.Unix()
	}
	var keyBuf [256]byte
	key, err := appendPermKey(keyBuf[:0], mc)
	if err != nil {
		return Grant{}, err
	}
	switch admin := mc["admin"].(type) {
	case nil:
	case bool:
		g.Admin = admin
	default:
		return Grant{}, fmt.Errorf("%w: admin must be a boolean", ErrBadClaims)
	}
	if g.Perms = v.perms.lookup(key); g.Perms == nil {
		g.Perms = v.perms.intern(key, permissionsFromMap(mc))
	}
	return g, nil
}

// appendPermKey checks the permission claims and appends their canonical
// key (intern.go) to b.
func appendPermKey(b []byte, mc jwt.MapClaims) ([]byte, error) {
	var err error
	for _, name := range [...]string{"rooms", "pub", "sub_channels", "rpc"} {
		if b, err = appendPatternKey(b, mc, name); err != nil {
			return nil, err
		}
	}
	switch tags := mc["tags"].(type) {
	case nil:
		b = append(b, 0)
	case map[string]any:
		var keysBuf [8]string
		keys := keysBuf[:0]
		for k, v := range tags {
			if _, ok := v.(string); !ok {
				return nil, fmt.Errorf("%w: tags must map strings to strings", ErrBadClaims)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendKeyString(b, k)
			b = appendKeyString(b, tags[k].(string))
		}
	default:
		return nil, fmt.Errorf("%w: tags must map strings to strings", ErrBadClaims)
	}
	return b, nil
}

// appendPatternKey checks one list of patterns (a JSON null counts as
// absent) and appends its part of the key.
func appendPatternKey(b []byte, mc jwt.MapClaims, name string) ([]byte, error) {
	raw, ok := mc[name]
	if !ok || raw == nil {
		return append(b, 0), nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s must be a list of strings", ErrBadClaims, name)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(items)))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s must be a list of strings", ErrBadClaims, name)
		}
		if !ValidPattern(s) {
			return nil, fmt.Errorf("%w: %s holds a bad pattern %q", ErrBadClaims, name, s)
		}
		b = appendKeyString(b, s)
	}
	return b, nil
}

// permissionsFromMap builds the Permissions of claims appendPermKey has
// already checked.
func permissionsFromMap(mc jwt.MapClaims) *Permissions {
	p := &Permissions{}
	p.rooms, p.roomsSet = patternList(mc, "rooms")
	p.pub, _ = patternList(mc, "pub")
	p.subChannels, p.subChannelsSet = patternList(mc, "sub_channels")
	p.rpc, p.rpcSet = patternList(mc, "rpc")
	if tags, ok := mc["tags"].(map[string]any); ok {
		p.tags = make(map[string]string, len(tags))
		for k, v := range tags {
			p.tags[k] = v.(string)
		}
	}
	return p
}

// patternList reads a checked list of patterns; the result is non-nil
// whenever set is true.
func patternList(mc jwt.MapClaims, name string) (list []string, set bool) {
	items, ok := mc[name].([]any)
	if !ok {
		return nil, false
	}
	list = make([]string, len(items))
	for i, it := range items {
		list[i] = it.(string)
	}
	return list, true
}

// MintHS256 signs c with secret for `gateway token` and tests. With ttl > 0
// the token expires ttl from now; otherwise c.Exp is used when set, else the
// token has no exp (only accepted with AllowNoExp). Rooms and SubChannels are
// written when set (or non-nil), Pub when non-nil, Tags when non-empty, Admin
// when true.
func MintHS256(secret []byte, c Claims, ttl time.Duration) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: empty JWT secret")
	}
	if c.Sub == "" {
		return "", ErrMissingSub
	}
	if !wire.ValidName([]byte(c.Sub)) {
		return "", ErrBadSub
	}
	now := time.Now()
	mc := jwt.MapClaims{"sub": c.Sub, "iat": now.Unix()}
	switch {
	case ttl > 0:
		mc["exp"] = now.Add(ttl).Unix()
	case !c.Exp.IsZero():
		mc["exp"] = c.Exp.Unix()
	}
	for _, l := range []struct {
		name string
		list []string
		set  bool
	}{
		{name: "rooms", list: c.Rooms, set: c.RoomsSet || c.Rooms != nil},
		{name: "pub", list: c.Pub, set: c.Pub != nil},
		{name: "sub_channels", list: c.SubChannels, set: c.SubChannelsSet || c.SubChannels != nil},
		{name: "rpc", list: c.RPC, set: c.RPCSet || c.RPC != nil},
	} {
		if !l.set {
			continue
		}
		for _, p := range l.list {
			if !ValidPattern(p) {
				return "", fmt.Errorf("%w: %s holds a bad pattern %q", ErrBadClaims, l.name, p)
			}
		}
		mc[l.name] = append([]string{}, l.list...)
	}
	if len(c.Tags) > 0 {
		mc["tags"] = c.Tags
	}
	if c.Admin {
		mc["admin"] = true
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(secret)
}
