// The client library against a real gateway process (PROTOCOL.md sections
// 2-4, 7, 9, 10): every request type, msgpack, rpc through a NATS service,
// the do-not-reconnect class, drain hints, token refresh and backoff.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";

import { Client, WsgateError, backoffDelay, shouldReconnect, msgpackEncode, msgpackDecode, SeenIDs } from "../wsgate.js";
import { buildGateway, startGateway, token, freePort, waitFor, nextEvent, natsResponder } from "./gateway.js";

let build;
before(() => { build = buildGateway(); });
after(() => build && build.cleanup());

const clients = [];
function client(gw, sub, opts = {}) {
  const c = new Client(Object.assign({ url: gw.url(), token: token(sub, { pub: ["news.*"] }), WebSocket, requestTimeoutMs: 5000 }, opts));
  clients.push(c);
  return c;
}
function closeAll() {
  while (clients.length) clients.pop().close();
}
function collect(c, event) {
  const got = [];
  c.on(event, (m) => got.push(m));
  return got;
}

test("codec and helpers", () => {
  const v = { type: "message", data: { text: "héllo ✓", n: [0, 1, -1, -33, 127, 128, 255, 256, 65535, 65536, 2 ** 32, 2 ** 40, -(2 ** 40), 1.25], t: true, f: false, z: null }, long: "x".repeat(300) };
  assert.deepEqual(msgpackDecode(msgpackEncode(v)), v);
  assert.deepEqual(msgpackDecode(msgpackEncode(new Uint8Array([1, 2, 3]))), new Uint8Array([1, 2, 3]));
  assert.throws(() => msgpackDecode(new Uint8Array([0x92, 0x01])), /truncated/);
  assert.throws(() => msgpackDecode(new Uint8Array([0x01, 0x02])), /trailing/);
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 4000, 4008, 4009, 4010, 4011, 4012, 4499]) assert.ok(shouldReconnect(code), String(code));
  for (const code of [1002, 1007, 1008, 1009, 4500, 4501, 4502, 4503, 4999]) assert.ok(!shouldReconnect(code), String(code));
  for (let a = 0; a < 10; a++) {
    assert.equal(backoffDelay(a, 100, 1000, () => 0), 0);
    assert.equal(backoffDelay(a, 100, 1000, () => 0.999999), Math.floor(0.999999 * Math.min(1000, 100 * 2 ** a)));
  }
  const seen = new SeenIDs(3);
  assert.ok(seen.add("a") && seen.add("b") && seen.add("c"));
  assert.ok(!seen.add("a"));
  assert.ok(seen.add("d")); // evicts a
  assert.ok(seen.add("a") && !seen.has("b"));
});

test("every request type, in gw.json and gw.msgpack", async (t) => {
  const natsPort = await freePort();
  const gw = await startGateway(build.bin, ["-nats-listen", "127.0.0.1:" + natsPort, "-presence-events"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  const svc = await natsResponder(natsPort, "gw.rpc.>", (data) =>
    data && data.fail ? { body: "no such order", error: "not_found" } : { body: JSON.stringify({ echo: data }) });
  t.after(() => svc.close());

  for (const encoding of ["json", "msgpack"]) {
    const alice = client(gw, "alice", { encoding });
    const bob = client(gw, "bob", { encoding: encoding === "json" ? "msgpack" : "json" });
    const states = collect(alice, "state");
    const ok = await alice.connect();
    assert.equal(ok.user, "alice");
    assert.equal(alice.state, "connected");
    assert.deepEqual(states, ["connecting", "connected"]);
    await bob.connect();

    const bobMsgs = collect(bob, "message");
    const joinedEvents = collect(alice, "user:joined");
    const leftEvents = collect(alice, "user:left");
    assert.equal((await alice.join("lobby")).type, "joined");
    await bob.join("lobby");
    await waitFor("alice hears user:joined bob", () => joinedEvents.some((e) => e.user === "bob" && e.room === "lobby"));
    assert.deepEqual((await alice.presence("lobby")).sort(), ["alice", "bob"]);

    const data = { text: "hi ✓", n: 42, nested: [1, 2.5, null, true] };
    const ack = await alice.message("lobby", data);
    assert.match(ack.mid, /\S/);
    assert.equal(ack.seq, undefined); // no history
    await waitFor("bob gets the message", () => bobMsgs.length === 1);
    assert.equal(bobMsgs[0].id, ack.mid, "ack.mid is the id the receiver sees");
    assert.deepEqual(bobMsgs[0].data, data);
    assert.equal(bobMsgs[0].from, "alice");

    assert.equal((await bob.subscribe("news.eu")).type, "subscribed");
    const pub = await alice.publish("news.eu", "headline");
    await waitFor("bob gets the publish", () => bobMsgs.length === 2);
    assert.equal(bobMsgs[1].channel, "news.eu");
    assert.equal(bobMsgs[1].id, pub.mid);

    const sent = await alice.send("bob", { dm: 1 });
    assert.deepEqual({ delivered: sent.delivered, remote: sent.remote }, { delivered: 1, remote: true });
    await waitFor("bob gets the send", () => bobMsgs.length === 3);
    assert.equal(bobMsgs[2].to, "bob");
    assert.equal(bobMsgs[2].id, sent.mid);

    assert.equal(typeof (await alice.ping()), "number");
    assert.deepEqual(await alice.rpc("orders.get", { id: 7 }), { echo: { id: 7 } });
    await assert.rejects(alice.rpc("orders.get", { fail: true }), (e) => e instanceof WsgateError && e.code === "service_error" && e.reason === "not_found");
    await assert.rejects(alice.publish("sports", 1), (e) => e.code === "forbidden"); // pub claim: news.* only
    await assert.rejects(alice.leave("nowhere"), (e) => e.code === "not_joined");

    assert.equal((await bob.unsubscribe("news.eu")).type, "unsubscribed");
    assert.equal((await bob.leave("lobby")).type, "left");
    await waitFor("alice hears user:left bob", () => leftEvents.some((e) => e.user === "bob"));
    await alice.message("lobby", "nobody hears this");
    await alice.publish("news.eu", "nor this");
    assert.equal((await bob.ping() > 0), true); // bob's connection is fine and saw nothing more
    assert.equal(bobMsgs.length, 3);
    alice.close();
    bob.close();
    await assert.rejects(alice.join("x"), (e) => e.code === "closed");
  }
});

test("a request times out", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-", "-rpc-timeout", "3s"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  const c = client(gw, "carol");
  await c.connect();
  // rpc with no responder answers at once (unavailable); a request the
  // library times out itself needs a gateway that stays silent: a
  // SIGSTOPped one.
  await assert.rejects(c.rpc("nobody.home", {}), (e) => e.code === "unavailable");
  gw.proc.kill("SIGSTOP");
  t.after(() => gw.proc.kill("SIGCONT"));
  await assert.rejects(c.ping({ timeoutMs: 200 }), (e) => e.code === "timeout");
  gw.proc.kill("SIGCONT");
});

test("4501 stops reconnecting with a clear error", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  let calls = 0;
  const c = client(gw, "mallory", { token: () => { calls++; return token("mallory", {}, 3600, "wrong-secret"); }, backoffBaseMs: 10 });
  const connecting = collect(c, "connecting");
  const errors = collect(c, "error");
  await assert.rejects(c.connect(), (e) => e instanceof WsgateError && e.closeCode === 4501 && /authentication failed.*not reconnecting/.test(e.message));
  assert.equal(c.state, "closed");
  assert.equal(c.lastClose.code, 4501);
  // Quiet for a while: a client that reconnected would have by now (base 10 ms).
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(connecting.length, 1);
  assert.equal(calls, 1);
  assert.ok(errors.some((e) => e.closeCode === 4501));
});

test("backoff: full jitter, exponential, capped, while the gateway is down", async (t) => {
  const port = await freePort(); // nothing listens here
  const c = new Client({ url: `ws://127.0.0.1:${port}/ws`, token: "x", WebSocket, backoffBaseMs: 50, backoffMaxMs: 400 });
  clients.push(c);
  t.after(closeAll);
  const plans = [];
  const starts = [];
  c.on("reconnecting", (r) => plans.push({ ...r, at: Date.now() }));
  c.on("connecting", () => starts.push(Date.now()));
  c.connect().catch(() => {});
  await waitFor("9 attempts", () => plans.length >= 9 && starts.length >= 9, 20000);
  c.close();
  for (let i = 0; i < 8; i++) {
    const cap = Math.min(400, 50 * 2 ** i);
    assert.ok(plans[i].delay >= 0 && plans[i].delay < cap, `attempt ${i}: delay ${plans[i].delay}, want [0, ${cap})`);
    assert.equal(plans[i].hinted, false);
    // the next attempt starts no earlier than planned (timers never fire early)
    assert.ok(starts[i + 1] - plans[i].at >= plans[i].delay - 2, `attempt ${i}: started after ${starts[i + 1] - plans[i].at} ms, planned ${plans[i].delay}`);
  }
  // Jitter: eight draws are not all the same.
  assert.ok(new Set(plans.map((p) => p.delay)).size > 1);
});

test("drain: reconnect {after_ms} then 1001, honoured", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-", "-drain-time", "1500ms"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  const c = client(gw, "dave", { backoffBaseMs: 5000 }); // a plain backoff would be visible
  await c.connect();
  await c.join("lobby");
  let hintAt = 0, hint = -1, attemptAt = 0;
  c.on("reconnect", (r) => { hintAt = Date.now(); hint = r.afterMs; });
  c.on("connecting", () => { if (hintAt && !attemptAt) attemptAt = Date.now(); });
  const planned = nextEvent(c, "reconnecting");
  gw.proc.kill("SIGTERM");
  const [plan] = await planned;
  assert.equal(c.lastClose.code, 1001);
  assert.ok(hint >= 0 && hint < 1500, "after_ms " + hint);
  assert.equal(plan.hinted, true);
  assert.equal(plan.delay, hint);
  assert.equal((await gw.exit).code, 0);
  const gw2 = await startGateway(build.bin, ["-nats-listen", "-"], { addr: gw.addr, admin: "127.0.0.1:0" });
  t.after(() => gw2.kill("SIGKILL"));
  const [{ reconnected }] = await nextEvent(c, "connected", 15000);
  assert.equal(reconnected, true);
  // The first attempt after the notice came no earlier than after_ms after it.
  assert.ok(attemptAt - hintAt >= hint - 2, `first attempt ${attemptAt - hintAt} ms after the notice, after_ms ${hint}`);
  assert.deepEqual(await c.presence("lobby"), ["dave"], "re-joined after the reconnect");
});

test("token refresh before exp, no reconnect", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-", "-token-grace", "500ms"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  let calls = 0;
  const c = client(gw, "erin", { token: () => { calls++; return token("erin", {}, 3); }, refreshMarginMs: 1000 });
  const disconnects = collect(c, "disconnected");
  const refreshed = collect(c, "refreshed");
  const info = await c.connect();
  const exp0 = info.exp;
  assert.ok(exp0 > 0);
  await waitFor("refreshed", () => refreshed.length >= 1, 5000);
  assert.ok(refreshed[0].exp >= exp0);
  // Past the first token's exp plus the grace: still the same connection.
  await waitFor("the first exp and grace passed", () => Date.now() > exp0 * 1000 + 700, 6000);
  assert.equal(typeof (await c.ping()), "number");
  assert.equal(disconnects.length, 0);
  assert.equal(c.conn, info.conn);
  assert.ok(calls >= 2);
});

test("4011: a token not refreshed in time closes, the token function is called again, reconnect", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-", "-token-grace", "200ms"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  let calls = 0;
  // autoRefresh off: the client lets the token lapse, as one whose token
  // function failed to refresh in time would.
  const c = client(gw, "frank", { token: () => { calls++; return token("frank", {}, calls === 1 ? 1 : 3600); }, autoRefresh: false, backoffBaseMs: 20 });
  const expired = collect(c, "token_expired");
  await c.connect();
  await c.join("lobby");
  const [closed] = await nextEvent(c, "disconnected", 10000);
  assert.equal(closed.code, 4011);
  assert.equal(expired.length, 1);
  const [again] = await nextEvent(c, "connected", 10000);
  assert.equal(again.reconnected, true);
  assert.equal(calls, 2);
  assert.deepEqual(await c.presence("lobby"), ["frank"], "re-joined with the fresh token");
});

test("keepalive: pings keep an idle client connected; without them the gateway closes 4010", async (t) => {
  const gw = await startGateway(build.bin, ["-nats-listen", "-", "-idle-timeout", "1s"]);
  t.after(() => { closeAll(); return gw.kill("SIGKILL"); });
  const pinging = client(gw, "gina", { pingIntervalMs: 250 });
  const silent = client(gw, "hank", { pingIntervalMs: 0 });
  const pingingDrops = collect(pinging, "disconnected");
  await Promise.all([pinging.connect(), silent.connect()]);
  const [closed] = await nextEvent(silent, "disconnected", 10000);
  assert.equal(closed.code, 4010);
  // The silent one connected at the same time and was closed for idling;
  // the pinging one, idle just as long, is still on its first connection.
  assert.equal(pingingDrops.length, 0);
  assert.equal(pinging.state, "connected");
});
