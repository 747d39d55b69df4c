// Reconnect after a gateway restart (kill -9, start again on the same ports
// and data dir, -history): the library re-joins, resumes each room from its
// last seq, gets exactly what it missed, and shows nothing twice, its own
// messages included (the ack's mid).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";

import { Client } from "../wsgate.js";
import { buildGateway, startGateway, token, waitFor, nextEvent } from "./gateway.js";

let build;
before(() => { build = buildGateway(); });
after(() => build && build.cleanup());

test("restart with history: resume, no duplicate", async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), "wsgate-js-data-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const args = ["-nats-listen", "-", "-history", "-data-dir", dataDir];
  const gw = await startGateway(build.bin, args);
  let gw2 = null;
  t.after(() => Promise.all([gw.kill("SIGKILL"), gw2 && gw2.kill("SIGKILL")]));

  // Bob's token function can be held, which keeps bob offline on demand.
  let hold = null;
  const bobToken = async () => { if (hold) await hold.promise; return token("bob"); };
  const opts = { url: gw.url(), WebSocket, backoffBaseMs: 50, backoffMaxMs: 200, requestTimeoutMs: 10000 };
  const alice = new Client({ ...opts, token: () => token("alice") });
  const bob = new Client({ ...opts, token: bobToken, encoding: "msgpack" });
  t.after(() => { alice.close(); bob.close(); });
  const got = { alice: [], bob: [] };
  alice.on("message", (m) => got.alice.push(m));
  bob.on("message", (m) => got.bob.push(m));
  await Promise.all([alice.connect(), bob.connect()]);
  await alice.join("chat");
  await bob.join("chat");

  const a1 = await alice.message("chat", "a1");
  assert.ok(a1.mid && a1.seq > 0, "ack carries mid and seq in history mode: " + JSON.stringify(a1));
  await waitFor("bob gets a1", () => got.bob.length === 1);
  assert.equal(got.bob[0].id, a1.mid);
  assert.equal(got.bob[0].seq, a1.seq);
  const b1 = await bob.message("chat", "b1");
  await waitFor("alice gets b1", () => got.alice.length === 1);
  assert.equal(got.alice[0].id, b1.mid);

  // kill -9 and start again on the same ports and data dir, bob held back.
  hold = Promise.withResolvers ? Promise.withResolvers() : (() => { let r; const p = new Promise((x) => (r = x)); return { promise: p, resolve: r }; })();
  const bobDown = nextEvent(bob, "disconnected");
  await gw.kill("SIGKILL");
  await bobDown;
  gw2 = await startGateway(build.bin, args, { addr: gw.addr, admin: gw.admin });
  await nextEvent(alice, "connected", 20000, (e) => e.reconnected);
  assert.equal(bob.state, "connecting");
  // Bob is away: two messages he must get from the history, not live.
  const a2 = await alice.message("chat", "a2");
  const a3 = await alice.message("chat", "a3");
  assert.ok(a2.seq > b1.seq && a3.seq > a2.seq);
  hold.resolve();
  hold = null;
  await nextEvent(bob, "connected", 20000, (e) => e.reconnected);
  await waitFor("bob resumes a2 and a3", () => got.bob.length >= 3);
  // After the restore, live again both ways.
  const b2 = await bob.message("chat", "b2");
  await waitFor("alice gets b2", () => got.alice.some((m) => m.id === b2.mid));
  const a4 = await alice.message("chat", "a4");
  await waitFor("bob gets a4", () => got.bob.some((m) => m.id === a4.mid));
  // Settle: a ping round trip on each after the last delivery.
  await Promise.all([alice.ping(), bob.ping()]);

  assert.deepEqual(got.bob.map((m) => m.data), ["a1", "a2", "a3", "a4"], "bob: each of alice's messages once, in order, none of his own");
  assert.deepEqual(got.alice.map((m) => m.data), ["b1", "b2"], "alice: each of bob's messages once");
  assert.deepEqual(got.bob.map((m) => m.id), [a1.mid, a2.mid, a3.mid, a4.mid]);
  for (const who of ["alice", "bob"]) {
    const seqs = got[who].map((m) => m.seq);
    assert.deepEqual([...seqs].sort((x, y) => x - y), seqs, who + ": seqs in order");
  }
});
