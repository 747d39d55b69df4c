// Package auth verifies and mints the JWTs of PROTOCOL.md section 2 and
// answers the permission questions their claims decide: may this user join
// a room (claim `rooms`), publish to a channel (`pub`), subscribe to one
// (`sub_channels`). The glob patterns of those claims live here too
// (ValidPattern, MatchPattern); names themselves follow wire.ValidName.
//
// # Ownership
//
// A Verifier is immutable after NewVerifier and safe to use from any
// goroutine; Claims are read-only once returned by Verify. Verification
// allocates and runs once per connection (upgrade or `auth` message), never
// per message; the May* checks allocate nothing and run per request.
package auth
