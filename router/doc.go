// Package router is wsgate's application layer on top of the engine:
// authentication, users, rooms, channels, presence, conditional and priority
// routing, and per-connection flow control (PROTOCOL.md sections 2-4, 7, 8).
// It implements engine.Handler and talks to other instances through the
// Backplane interface (NATS in production, LocalHub in tests). What goes over
// a client's socket is package wire's (decoding, validation, replies,
// transcoding); who may do what is package auth's (tokens, claims).
//
// # Who owns what
//
//		engine loop i ──owns──▶ shard i: room/user/channel -> local members (slices),
//		                                 authenticated clients, decode/encode scratch
//		                        client (per connection, engine.Conn.App): token's
//		                                 sub/exp/admin and a pointer to its shared,
//		                                 immutable auth.Permissions, memberships,
//		                                 token buckets, held frames
//		any goroutine ─────────▶ registry: address -> {loop mask (atomic), counts,
//		                                 presence users} under that address's mutex
//		backplane goroutines ──▶ Router.fromBackplane -> engine.Loop.PostBytes only;
//		                         shard i's ackQueue.Confirmed (its mutex) -> one Post
//		any goroutine ─────────▶ shard.gaps (gapBook): refused handoffs per
//		                                 address, under its mutex; drained by its loop
//		presence goroutine ────▶ the presence tracker (presence.go, tracker.go):
//		                                 rooms with local members -> user -> instances;
//		                                 loops only mark pairs dirty and post queries
//
//	  - A shard and the clients on it are touched only by their event loop:
//	    Handler callbacks and the tasks posted to that loop (deliverTask,
//	    gapTask, replay pages).
//	  - The registry is the only cross-loop state. The delivery path only
//	    loads an address's loop mask (lock-free); join, leave, auth and close
//	    update counts under that one address's mutex. There is no global mutex.
//	  - Backplane interest is level-triggered: join, leave, auth and close
//	    only tell the backplane that an address may have changed, and it
//	    re-reads the registry (Host.HasLocal), so racing notifications from
//	    two loops cannot leave a subscription wrong.
//	  - With a backplane, a client's ack waits for the backplane's
//	    confirmation (confirm.go): the loop keeps a ring of pending acks and
//	    answers them from one posted task per batch of confirmations.
//	  - Replies to auth, join and subscribe, and the answer to a client's
//	    close frame, wait for a settle round (settle.go): the backplane's
//	    Sync, then a fence task through every loop, then a task on the
//	    connection's loop. Meanwhile the connection's output waits in
//	    client.held (new membership) or it keeps receiving (close held by
//	    the engine, engine.CloseHolder).
//	  - A message is stamped and encoded once per codec in use (outMsg.frameFor,
//	    guarded by sync.Once because several loops may want it at once), and
//	    handed to each other loop with members by exactly one PostBytes; the
//	    sender's loop fans out synchronously. Receivers share the frame bytes.
//	  - Every handoff that carries messages into a loop (route, replay pages)
//	    is charged against the loop's inbox byte budget (-loop-inbox-bytes).
//	    A refused one is never queued: the poster records it in that loop's
//	    gapBook (bounded: maxGapAddrs addresses, then "everyone on the loop")
//	    and posts one drain task (gapTask), which tells the address's members
//	    `gap {dropped, room|channel|to, reason: "overload"}`. A backplane that
//	    lost messages says so with Remote.Dropped and takes the same path.
//
// # Flow control
//
// Inbound: token buckets per connection (messages and bytes); an over-limit
// message gets `error rate_limited`, and -rate-kick-after violations in a row
// close with 1008. Outbound: above -write-high-water a connection is backed
// up: low-priority messages are dropped and counted, normal ones are held in
// the client (not in gnet's buffer) so that high-priority messages overtake
// them; a message that would take the queue past -max-queue-bytes closes
// the connection with 4009 instead. When the engine reports the connection
// drained below -write-low-water (Handler.OnDrain), the held messages go out,
// followed by one `gap` message with the number dropped (overload gaps that
// reach a backed-up connection are added to that count). Deliveries whose
// data has no form in the receiver's codec are skipped and counted
// (ShardStats.Undeliverable); JSON numbers beyond float64 are refused at the
// door, so that does not happen to JSON data.
package router
