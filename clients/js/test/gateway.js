// Test helpers: a real gateway binary (built once per test file from the
// repository's cmd/gateway), real processes and signals, HS256 tokens, and
// a tiny NATS responder for rpc. No mocks.

import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = "wsgate-js-test-secret";
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** buildGateway builds cmd/gateway into a fresh temp dir; returns {bin, dir, cleanup}. */
export function buildGateway() {
  const dir = mkdtempSync(join(tmpdir(), "wsgate-js-test-"));
  const bin = join(dir, "gateway");
  execFileSync("go", ["build", "-o", bin, "./cmd/gateway"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  return { bin, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * startGateway runs the binary with args (plus the test secret) and
 * resolves once it logged both listen addresses.
 */
export function startGateway(bin, args, { addr = "127.0.0.1:0", admin = "127.0.0.1:0" } = {}) {
  const full = ["-jwt-secret", SECRET, "-addr", addr, "-admin-addr", admin, "-loops", "2", ...args];
  const proc = spawn(bin, full, { stdio: ["ignore", "ignore", "pipe"] });
  const gw = { proc, log: "", addr: "", admin: "", exited: null };
  gw.exit = new Promise((resolve) => proc.on("exit", (code, signal) => { gw.exited = { code, signal }; resolve(gw.exited); }));
  gw.url = () => "ws://" + gw.addr + "/ws";
  gw.kill = (sig) => { if (!gw.exited) proc.kill(sig); return gw.exit; };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill("SIGKILL"); reject(new Error("gateway did not start:\n" + gw.log)); }, 20000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      gw.log += chunk;
      if (gw.log.length > 200000) gw.log = gw.log.slice(-100000);
      const a = /msg="gateway listening" addr=(\S+)/.exec(gw.log);
      const b = /msg="admin listening" addr=(\S+)/.exec(gw.log);
      if (a && b && !gw.addr) {
        gw.addr = a[1];
        gw.admin = b[1];
        clearTimeout(timer);
        resolve(gw);
      }
    });
    gw.exit.then((e) => { clearTimeout(timer); if (!gw.addr) reject(new Error("gateway exited " + JSON.stringify(e) + ":\n" + gw.log)); });
  });
}

/** token mints an HS256 JWT for sub with extra claims, valid ttlSec. */
export function token(sub, claims = {}, ttlSec = 3600, secret = SECRET) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = Object.assign({ sub, exp: Math.floor(Date.now() / 1000) + ttlSec }, claims);
  const head = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(body);
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

/** freePort returns a loopback TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}

/** waitFor polls cond (every 10 ms) until it is truthy or ms passed. */
export async function waitFor(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** nextEvent resolves with the next `event` of client c (args as an array). */
export function nextEvent(c, event, ms = 10000, pred = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error("no " + event + " event in " + ms + "ms")); }, ms);
    const off = c.on(event, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/**
 * natsResponder connects to a NATS server at port and answers requests on
 * subject with handler(data) -> {body, error?} (error becomes the
 * Wsgate-Error header). A minimal NATS protocol client: enough for the
 * test, not a library.
 */
export function natsResponder(port, subject, handler) {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let ready = false;
    sock.on("error", reject);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const nl = buf.indexOf("\r\n");
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString();
        const parts = line.split(" ");
        if (parts[0] === "INFO") {
          sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\nSUB ${subject} 1\r\nPING\r\n`);
          buf = buf.subarray(nl + 2);
        } else if (parts[0] === "PING") {
          sock.write("PONG\r\n");
          buf = buf.subarray(nl + 2);
        } else if (parts[0] === "PONG") {
          buf = buf.subarray(nl + 2);
          if (!ready) { ready = true; resolve({ close: () => sock.destroy() }); }
        } else if (parts[0] === "MSG" || parts[0] === "HMSG") {
          const hmsg = parts[0] === "HMSG";
          const total = Number(parts[parts.length - 1]);
          const hdr = hmsg ? Number(parts[parts.length - 2]) : 0;
          const reply = parts.length === (hmsg ? 6 : 5) ? parts[3] : "";
          if (buf.length < nl + 2 + total + 2) return;
          const payload = buf.subarray(nl + 2 + hdr, nl + 2 + total).toString();
          buf = buf.subarray(nl + 2 + total + 2);
          const out = handler(JSON.parse(payload));
          const body = Buffer.from(out.body);
          if (out.error) {
            const h = Buffer.from(`NATS/1.0\r\nWsgate-Error: ${out.error}\r\n\r\n`);
            sock.write(`HPUB ${reply} ${h.length} ${h.length + body.length}\r\n`);
            sock.write(Buffer.concat([h, body, Buffer.from("\r\n")]));
          } else {
            sock.write(`PUB ${reply} ${body.length}\r\n`);
            sock.write(Buffer.concat([body, Buffer.from("\r\n")]));
          }
        } else {
          buf = buf.subarray(nl + 2); // +OK, -ERR: ignored
        }
      }
    });
  });
}
