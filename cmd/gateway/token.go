package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wsgate/wsgate/auth"
)

// runToken is `gateway token`: it mints an HS256 development token.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("jwt-secret", "", "HS256 secret (default: $WSGATE_JWT_SECRET)")
	sub := fs.String("sub", "", "user id (required)")
	rooms := fs.String("rooms", "", "comma-separated rooms or globs the user may join (empty = all)")
	pub := fs.String("pub", "", "comma-separated channel patterns the user may publish to (empty = none)")
	subChannels := fs.String("sub-channels", "", "comma-separated channel patterns the user may subscribe to (empty = all)")
	rpc := fs.String("rpc", "", "comma-separated service method patterns the user may call with rpc (empty = all)")
	tags := fs.String("tags", "", "comma-separated key=value tags for conditional routing")
	admin := fs.Bool("admin", false, "set the admin claim")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime (must be positive; see -no-exp)")
	noExp := fs.Bool("no-exp", false, "mint a token without exp, which never expires (accepted only by a gateway with -jwt-allow-no-exp)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ttlSet := false
	fs.Visit(func(f *flag.Flag) { ttlSet = ttlSet || f.Name == "ttl" })
	switch {
	case *noExp && ttlSet:
		fmt.Fprintln(stderr, "gateway token: -no-exp and -ttl are exclusive: a token without exp has no lifetime")
		return 2
	case *noExp:
		*ttl = 0 // MintHS256 leaves exp out
	case *ttl <= 0:
		// A zero ttl used to mint a token without exp silently: one that
		// never expires must be asked for by name.
		fmt.Fprintf(stderr, "gateway token: -ttl %v: must be positive (use -no-exp for a token without exp)\n", *ttl)
		return 2
	}
	if *secret == "" {
		*secret = os.Getenv("WSGATE_JWT_SECRET")
	}
	if *secret == "" || *sub == "" {
		fmt.Fprintln(stderr, "gateway token: -sub and a secret (-jwt-secret or $WSGATE_JWT_SECRET) are required")
		return 2
	}
	c := auth.Claims{Sub: *sub, Admin: *admin}
	if *rooms != "" {
		c.Rooms, c.RoomsSet = splitList(*rooms), true
	}
	if *pub != "" {
		c.Pub = splitList(*pub)
	}
	if *subChannels != "" {
		c.SubChannels, c.SubChannelsSet = splitList(*subChannels), true
	}
	if *rpc != "" {
		c.RPC, c.RPCSet = splitList(*rpc), true
	}
	if *tags != "" {
		c.Tags = map[string]string{}
		for _, kv := range splitList(*tags) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				fmt.Fprintf(stderr, "gateway token: tag %q: want key=value\n", kv)
				return 2
			}
			c.Tags[k] = v
		}
	}
	tok, err := auth.MintHS256([]byte(*secret), c, *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "gateway token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// devSecret is a random secret for -dev; it is printed, so never use -dev in production.
func devSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printDevBanner(w io.Writer, secret, addr, path string) {
	host := addr
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	fmt.Fprintf(w, `
  wsgate development mode — the secret below is random and printed: never use -dev in production.
    dev secret:   %s
    mint a token: WSGATE_JWT_SECRET=%s go run ./cmd/gateway token -sub alice -rooms 'lobby,chat.*'
    connect:      ws://%s%s?token=<token>

`, secret, secret, host, path)
}
