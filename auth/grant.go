package auth

import "time"

// This file holds what a verified token leaves behind per connection: a
// small Grant (who, until when, admin) pointing at Permissions that every
// connection whose token carries the same permission claims shares (see
// intern.go). A gateway with 100k connections and a handful of token
// shapes keeps a handful of Permissions, not 100k copies of the lists.

// Grant is what a verified token grants one connection. It is small and
// meant to be copied (or taken apart) by value; the lists it answers from
// live in Perms, which is shared and must not be modified.
type Grant struct {
	Sub string // the user id (claim `sub`)
	// Perms are the token's permission claims, shared with every other
	// token that carries the same ones. Never nil in a Grant from Verify.
	Perms *Permissions
	Exp   int64 // claim `exp` in UNIX seconds; 0 when the token has none
	Admin bool  // claim `admin`; carried for the caller, the May* checks ignore it
}

// ExpTime is Exp as a time, zero when the token has no exp.
func (g Grant) ExpTime() time.Time {
	if g.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(g.Exp, 0)
}

// MayJoin reports whether the user may join room (claim `rooms`).
func (g Grant) MayJoin(room []byte) bool { return g.Perms.MayJoin(room) }

// MayPublish reports whether the user may publish to channel (claim `pub`).
func (g Grant) MayPublish(channel []byte) bool { return g.Perms.MayPublish(channel) }

// MaySubscribe reports whether the user may subscribe to channel (claim
// `sub_channels`).
func (g Grant) MaySubscribe(channel []byte) bool { return g.Perms.MaySubscribe(channel) }

// MayRPC reports whether the user may call the service method (claim `rpc`).
func (g Grant) MayRPC(method []byte) bool { return g.Perms.MayRPC(method) }

// Claims is g in the flat form of Claims (what MintHS256 takes). Its lists
// and tags are the shared ones of g.Perms: read them, never modify them.
func (g Grant) Claims() Claims {
	p := g.Perms
	return Claims{Sub: g.Sub, Exp: g.ExpTime(), Rooms: p.rooms, RoomsSet: p.roomsSet, Pub: p.pub,
		SubChannels: p.subChannels, SubChannelsSet: p.subChannelsSet, RPC: p.rpc, RPCSet: p.rpcSet,
		Tags: p.tags, Admin: g.Admin}
}

// Permissions are the permission claims of a token: the glob patterns of
// `rooms`, `pub`, `sub_channels` and `rpc` and the `tags`. Immutable once
// Verify returns them, and shared between every connection whose token
// carries the same claims, so the slices and the map the accessors return
// are read-only. The zero value is a token with none of these claims: every
// room, channel subscription and rpc method allowed, no publishing, no tags.
type Permissions struct {
	rooms, pub, subChannels, rpc     []string
	tags                             map[string]string
	roomsSet, subChannelsSet, rpcSet bool
}

// Rooms are the patterns of claim `rooms`; set is false when the claim is
// absent (every room allowed).
func (p *Permissions) Rooms() (patterns []string, set bool) { return p.rooms, p.roomsSet }

// Pub are the patterns of claim `pub` (nil or empty: nothing may be
// published).
func (p *Permissions) Pub() []string { return p.pub }

// SubChannels are the patterns of claim `sub_channels`; set is false when
// the claim is absent (every channel allowed).
func (p *Permissions) SubChannels() (patterns []string, set bool) {
	return p.subChannels, p.subChannelsSet
}

// RPC are the method patterns of claim `rpc`; set is false when the claim
// is absent (every method allowed).
func (p *Permissions) RPC() (patterns []string, set bool) { return p.rpc, p.rpcSet }

// Tags are the token's `tags` (nil when absent), for conditional routing
// filters. Read-only.
func (p *Permissions) Tags() map[string]string { return p.tags }

// MayJoin reports whether the user may join room (claim `rooms`).
func (p *Permissions) MayJoin(room []byte) bool { return allowedBy(p.rooms, p.roomsSet, room) }

// MayPublish reports whether the user may publish to channel (claim `pub`).
func (p *Permissions) MayPublish(channel []byte) bool { return matchAny(p.pub, channel) }

// MaySubscribe reports whether the user may subscribe to channel (claim
// `sub_channels`).
func (p *Permissions) MaySubscribe(channel []byte) bool {
	return allowedBy(p.subChannels, p.subChannelsSet, channel)
}

// MayRPC reports whether the user may call the service method (claim
// `rpc`; absent allows every method).
func (p *Permissions) MayRPC(method []byte) bool { return allowedBy(p.rpc, p.rpcSet, method) }
