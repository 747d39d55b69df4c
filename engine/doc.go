// Package engine is wsgate's reactor: gnet v2 event loops that accept TCP
// connections, parse the WebSocket upgrade and frames right on the loop, and
// write replies in corked batches. There is no goroutine per connection.
//
// # Who owns what
//
//   - A gnet event loop goroutine owns its Loop (inbox drain, timing wheel,
//     dirty and backlog lists, counters, the handler's per-loop data) and every
//     Conn on it: the gnet.Conn, the frame.Decoder and its buffers, the cork
//     buffer, lifecycle state and timestamps. Handler callbacks and Tasks run
//     on that goroutine, so they touch these without locks.
//   - Any goroutine may call Loop.Post (a mutex-guarded inbox and one gnet
//     Execute per wake-up), Engine.Stats (which copies counters on each loop
//     through Post), Engine.Loops, Engine.OpenConns, Engine.Addr and
//     Engine.Stop. Work for a connection on another loop is always handed
//     over through Post; a Conn is never touched off its loop.
//   - The ticker goroutine only posts tick Tasks: gnet's OnTick runs on a
//     goroutine of its own, so the wheel is advanced on the loop through Post.
//
// # Write path
//
// Conn.WriteMessage, WriteShared and WriteRaw append to the connection's cork
// buffer and put it on the loop's dirty list. The connection whose traffic is
// being handled is written at the end of OnTraffic (one write for all its
// replies); other connections written meanwhile — a room fan-out, say — are
// flushed once after the loop's current iteration, so every frame queued for
// a connection in one iteration leaves in one write syscall. What the kernel
// does not take stays in gnet's outbound buffer; Conn.Queued counts both, and
// the water marks and the 4009 slow-consumer limit apply to it.
//
// # Timers
//
// Handshake, authentication, ping, pong and idle deadlines live on a per-loop
// timing wheel (O(1) arm and expire, nothing per connection but two links and
// a few tick stamps). Activity only records a tick; when a slot comes up the
// loop works out what is really due.
package engine
