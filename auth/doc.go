// Package auth verifies and mints the JWTs of PROTOCOL.md section 2 and
// answers the permission questions their claims decide: may this user join
// a room (claim `rooms`), publish to a channel (`pub`), subscribe to one
// (`sub_channels`), call a service method (`rpc`). The glob patterns of
// those claims live here too (ValidPattern, MatchPattern); names themselves
// follow wire.ValidName.
//
// # Ownership
//
//   - A Verifier's configuration is immutable after NewVerifier; Verify is
//     safe from any goroutine. In the gateway it runs on the engine's event
//     loops (router: Accept for a token on the upgrade, the `auth` and
//     `refresh` messages), once per connection or refresh, never per
//     message. It allocates (JSON claims, big-number math).
//   - Verify returns a Grant by value: the per-connection part (sub, exp as
//     UNIX seconds, admin) that the caller owns and may copy or take apart,
//     and Perms, a pointer to Permissions.
//   - Permissions are immutable and shared: every token with the same
//     permission claims (rooms, pub, sub_channels, rpc, tags) verified by
//     one Verifier gets the same *Permissions while any holder keeps it.
//     The Verifier's intern table (intern.go) holds only weak pointers;
//     the garbage collector frees a value when its last holder drops it,
//     and a cleanup removes the entry. Holders release nothing by hand.
//   - The table's mutex guards one map lookup or store at a time, never
//     decoding, allocation or I/O, so an event loop waits at most for
//     another loop's map operation or the runtime's cleanup goroutine
//     deleting an entry. The table is bounded; past the bound, values are
//     handed out unshared.
//   - The May* checks (on Grant, Permissions and the flat Claims) allocate
//     nothing and run per request on the caller's goroutine.
package auth
