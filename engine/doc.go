// Package engine is wsgate's reactor: gnet v2 event loops that parse the
// WebSocket upgrade and frames right on the loop, and write replies in
// corked batches. There is no goroutine per connection.
//
// # Who owns what
//
//   - The acceptor goroutine (acceptor.go) owns the listening socket, the
//     spare descriptor and the descriptor count: it accepts, sheds (503,
//     close) when MaxConns are open or the process nears RLIMIT_NOFILE, and
//     hands every other connection to a gnet loop with gnet.Engine.Register.
//     gnet's own acceptor never runs: gnet listens only on a private Unix
//     socket, unlinked once bound. An accept error never ends the engine.
//   - A gnet event loop goroutine owns its Loop (inbox drain, timing wheel,
//     dirty, full and backlog lists, counters, the handler's per-loop data)
//     and every Conn on it: the gnet.Conn, the frame.Decoder and its buffers,
//     the cork buffer, lifecycle state and timestamps. Handler callbacks and
//     Tasks run on that goroutine, so they touch these without locks.
//   - Any goroutine may call Loop.Post and Loop.PostBytes (a mutex-guarded
//     inbox and one gnet Execute per wake-up), Engine.Stats (a copy made on
//     each loop through Post, or, for a loop that does not answer within
//     50 ms, the copy the loop published at its last tick under a small
//     mutex), Engine.AcceptStats (atomics), Engine.Loops, Engine.OpenConns,
//     Engine.Addr and Engine.Stop. Work for a connection on another loop is
//     always handed over through Post; a Conn is never touched off its loop.
//     Code on a loop hands work to other loops with Loop.Handoff and
//     HandoffBytes instead: the loop's outbox for each target is handed over
//     once per iteration (one lock, at most one wake-up per target).
//   - The ticker goroutine only posts tick Tasks: gnet's OnTick runs on a
//     goroutine of its own (the engine uses its first call only to learn
//     that gnet's loops exist), so the wheel is advanced on the loop.
//
// # Write path
//
// Conn.WriteMessage, WriteShared and WriteRaw append to the connection's cork
// buffer and put it on the loop's dirty list. The connection whose traffic is
// being handled is written at the end of OnTraffic; other connections are
// flushed when the loop settles: after its inbox is empty, or after every
// runBudget tasks, when Run writes what the tasks produced and yields to
// gnet's poll (reads, and writes of what gnet holds) before it goes on. A
// cork that passes flushAt while the kernel is taking everything is written
// right after the task that filled it. So frames queued for one connection
// in one iteration still leave in one write, and a burst leaves while it is
// produced instead of piling up in the cork.
//
// A flush writes to the socket itself while gnet's outbound buffer is empty;
// what the kernel refuses goes to gnet only up to about WriteHighWater, cut
// after whole frames, and the rest stays in the cork. Conn.Queued counts
// both; the water marks and the 4009 limit (MaxQueueBytes) apply to it, so a
// connection is judged slow by what the kernel refused, not by bytes the
// loop has not tried to write yet. Because the cork only ever holds whole
// frames, CloseSlowConsumer can drop it and put the 4009 close frame right
// behind what gnet holds (gnet cannot drop bytes); the TCP connection closes
// once gnet has written it, or after CloseTimeout. Backlogged connections
// are re-examined whenever the loop settles and on every tick.
//
// # Timers
//
// Handshake, authentication, ping, pong and idle deadlines live on a per-loop
// timing wheel (O(1) arm and expire, nothing per connection but two links and
// a few tick stamps). Activity only records a tick — any inbound frame for
// pings, a data message in either direction for the idle timeout; when a
// slot comes up the loop works out what is really due.
package engine
