// wsgate client library: one ES module, no dependencies, for browsers and
// Node.js. It speaks the gateway's wire contract (docs/protocol.md): auth,
// rooms, channels, direct sends, presence, history resume, token refresh,
// rpc, in gw.json or gw.msgpack, and it reconnects by the contract's close
// code classes. See README.md next to this file and docs/client.md.

export const VERSION = "0.1.0";

// --- errors ----------------------------------------------------------------

/** An error from the gateway (an `error` reply), a close, or the library. */
export class WsgateError extends Error {
  constructor(code, message, extra) {
    super(message ? code + ": " + message : code);
    this.name = "WsgateError";
    this.code = code; // "forbidden", "timeout", "closed", "auth_failed", ...
    if (extra) Object.assign(this, extra); // reason, closeCode, id
  }
}

// --- close codes (PROTOCOL.md section 4) ------------------------------------

/**
 * shouldReconnect tells whether a close code is in the contract's reconnect
 * class: 1002, 1007, 1008, 1009 and 4500-4999 mean "do not reconnect until
 * something changes"; everything else (1001, 1011, 1012, 1013, 4000-4499,
 * and 1005/1006, a network failure) means reconnect with backoff.
 */
export function shouldReconnect(code) {
  if (code === 1002 || code === 1007 || code === 1008 || code === 1009) return false;
  if (code >= 4500 && code <= 4999) return false;
  return true;
}

/**
 * backoffDelay is full-jitter exponential backoff: a uniform random delay in
 * [0, min(max, base * 2^attempt)).
 */
export function backoffDelay(attempt, base, max, random = Math.random) {
  const cap = Math.min(max, base * Math.pow(2, Math.min(attempt, 30)));
  return Math.floor(random() * cap);
}

// --- msgpack ---------------------------------------------------------------
// A small MessagePack codec (the subset the gateway uses: nil, bool, ints,
// floats, str, bin, array, map; ext is refused). Written here so the library
// stays free of runtime dependencies and can be served as one file.

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

class MsgpackWriter {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.n = 0;
  }
  ensure(k) {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const nb = new Uint8Array(size);
    nb.set(this.buf.subarray(0, this.n));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }
  u8(v) { this.ensure(1); this.buf[this.n++] = v; }
  u16(v) { this.ensure(2); this.view.setUint16(this.n, v); this.n += 2; }
  u32(v) { this.ensure(4); this.view.setUint32(this.n, v); this.n += 4; }
  bytes(b) { this.ensure(b.length); this.buf.set(b, this.n); this.n += b.length; }
  value(v) {
    if (v === null || v === undefined) return this.u8(0xc0);
    switch (typeof v) {
      case "boolean": return this.u8(v ? 0xc3 : 0xc2);
      case "number": return this.number(v);
      case "bigint": return this.bigint(v);
      case "string": return this.str(v);
    }
    if (v instanceof Uint8Array || v instanceof ArrayBuffer) return this.bin(v instanceof ArrayBuffer ? new Uint8Array(v) : v);
    if (Array.isArray(v)) {
      this.len(v.length, 0x90, 0xdc, 0xdd);
      for (const x of v) this.value(x);
      return;
    }
    if (typeof v.toJSON === "function") return this.value(v.toJSON());
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    this.len(keys.length, 0x80, 0xde, 0xdf);
    for (const k of keys) { this.str(k); this.value(v[k]); }
  }
  len(n, fix, m16, m32) {
    if (n < 16) this.u8(fix | n);
    else if (n < 0x10000) { this.u8(m16); this.u16(n); }
    else { this.u8(m32); this.u32(n); }
  }
  number(v) {
    if (Number.isInteger(v) && Number.isSafeInteger(v)) {
      if (v >= 0) {
        if (v < 128) return this.u8(v);
        if (v < 0x100) { this.u8(0xcc); return this.u8(v); }
        if (v < 0x10000) { this.u8(0xcd); return this.u16(v); }
        if (v < 0x100000000) { this.u8(0xce); return this.u32(v); }
        this.u8(0xcf); this.ensure(8); this.view.setBigUint64(this.n, BigInt(v)); this.n += 8; return;
      }
      if (v >= -32) return this.u8(v & 0xff);
      if (v >= -128) { this.u8(0xd0); this.ensure(1); this.view.setInt8(this.n++, v); return; }
      if (v >= -32768) { this.u8(0xd1); this.ensure(2); this.view.setInt16(this.n, v); this.n += 2; return; }
      if (v >= -2147483648) { this.u8(0xd2); this.ensure(4); this.view.setInt32(this.n, v); this.n += 4; return; }
      this.u8(0xd3); this.ensure(8); this.view.setBigInt64(this.n, BigInt(v)); this.n += 8; return;
    }
    if (!Number.isFinite(v)) throw new WsgateError("bad_request", "msgpack: " + v + " has no JSON form");
    this.u8(0xcb); this.ensure(8); this.view.setFloat64(this.n, v); this.n += 8;
  }
  bigint(v) {
    this.ensure(9);
    if (v >= 0n) { this.u8(0xcf); this.view.setBigUint64(this.n, v); } else { this.u8(0xd3); this.view.setBigInt64(this.n, v); }
    this.n += 8;
  }
  str(s) {
    const b = textEncoder.encode(s);
    if (b.length < 32) this.u8(0xa0 | b.length);
    else if (b.length < 0x100) { this.u8(0xd9); this.u8(b.length); }
    else if (b.length < 0x10000) { this.u8(0xda); this.u16(b.length); }
    else { this.u8(0xdb); this.u32(b.length); }
    this.bytes(b);
  }
  bin(b) {
    if (b.length < 0x100) { this.u8(0xc4); this.u8(b.length); }
    else if (b.length < 0x10000) { this.u8(0xc5); this.u16(b.length); }
    else { this.u8(0xc6); this.u32(b.length); }
    this.bytes(b);
  }
}

/** msgpackEncode encodes a JSON-like value (plus Uint8Array as bin). */
export function msgpackEncode(value) {
  const w = new MsgpackWriter();
  w.value(value);
  return w.buf.slice(0, w.n);
}

/** msgpackDecode decodes one MessagePack value that fills all of bytes. */
export function msgpackDecode(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let i = 0;
  const need = (k) => {
    if (i + k > b.length) throw new WsgateError("bad_message", "msgpack: truncated");
  };
  const str = (n) => { need(n); const s = textDecoder.decode(b.subarray(i, i + n)); i += n; return s; };
  const bin = (n) => { need(n); const s = b.slice(i, i + n); i += n; return s; };
  const arr = (n, depth) => { const a = new Array(n); for (let k = 0; k < n; k++) a[k] = val(depth); return a; };
  const map = (n, depth) => {
    const o = {};
    for (let k = 0; k < n; k++) {
      const key = val(depth);
      o[typeof key === "string" ? key : String(key)] = val(depth);
    }
    return o;
  };
  const u64 = (signed) => {
    need(8);
    const v = signed ? view.getBigInt64(i) : view.getBigUint64(i);
    i += 8;
    return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
  };
  function val(depth) {
    if (depth > 100) throw new WsgateError("bad_message", "msgpack: nested too deeply");
    depth++;
    need(1);
    const t = b[i++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f, depth);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f, depth);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    let v;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: need(1); return bin(b[i++]);
      case 0xc5: need(2); v = view.getUint16(i); i += 2; return bin(v);
      case 0xc6: need(4); v = view.getUint32(i); i += 4; return bin(v);
      case 0xca: need(4); v = view.getFloat32(i); i += 4; return v;
      case 0xcb: need(8); v = view.getFloat64(i); i += 8; return v;
      case 0xcc: need(1); return b[i++];
      case 0xcd: need(2); v = view.getUint16(i); i += 2; return v;
      case 0xce: need(4); v = view.getUint32(i); i += 4; return v;
      case 0xcf: return u64(false);
      case 0xd0: need(1); v = view.getInt8(i); i += 1; return v;
      case 0xd1: need(2); v = view.getInt16(i); i += 2; return v;
      case 0xd2: need(4); v = view.getInt32(i); i += 4; return v;
      case 0xd3: return u64(true);
      case 0xd9: need(1); return str(b[i++]);
      case 0xda: need(2); v = view.getUint16(i); i += 2; return str(v);
      case 0xdb: need(4); v = view.getUint32(i); i += 4; return str(v);
      case 0xdc: need(2); v = view.getUint16(i); i += 2; return arr(v, depth);
      case 0xdd: need(4); v = view.getUint32(i); i += 4; return arr(v, depth);
      case 0xde: need(2); v = view.getUint16(i); i += 2; return map(v, depth);
      case 0xdf: need(4); v = view.getUint32(i); i += 4; return map(v, depth);
    }
    throw new WsgateError("bad_message", "msgpack: unsupported type byte 0x" + t.toString(16));
  }
  const out = val(0);
  if (i !== b.length) throw new WsgateError("bad_message", "msgpack: " + (b.length - i) + " trailing bytes");
  return out;
}

// --- duplicate filter ------------------------------------------------------

/** SeenIDs remembers the last `size` message ids (a ring plus a set). */
export class SeenIDs {
  constructor(size) {
    this.size = Math.max(1, size);
    this.ring = new Array(this.size);
    this.next = 0;
    this.set = new Set();
  }
  /** add records id; it returns false when id was already there. */
  add(id) {
    if (this.set.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.size;
    this.set.add(id);
    return true;
  }
  has(id) { return this.set.has(id); }
}

// --- the client ------------------------------------------------------------

const DEFAULTS = {
  encoding: "json",          // "json" (gw.json) or "msgpack" (gw.msgpack)
  requestTimeoutMs: 10000,   // every request with an id
  connectTimeoutMs: 10000,   // socket open plus auth:ok
  pingIntervalMs: 25000,     // keepalive `ping` (0 = none); a missing pong reconnects
  backoffBaseMs: 250,
  backoffMaxMs: 10000,
  refreshMarginMs: 30000,    // refresh a token this long before its exp (at most half its life)
  autoRefresh: true,         // refresh from the token function before exp and on token_expired
  dedupeSize: 2048,          // message ids remembered to drop duplicates
  maxQueued: 1000,           // requests waiting for a connection
};

const STATES = ["disconnected", "connecting", "connected", "reconnecting", "closed"];

/**
 * Client is one logical connection to a wsgate gateway that survives
 * reconnects. See wsgate.d.ts for the full API.
 */
export class Client {
  constructor(opts) {
    if (!opts || !opts.url) throw new TypeError("wsgate: url is required");
    if (opts.token === undefined) throw new TypeError("wsgate: token (a string or a function) is required");
    this.opts = Object.assign({}, DEFAULTS, opts);
    if (this.opts.encoding !== "json" && this.opts.encoding !== "msgpack") {
      throw new TypeError("wsgate: encoding must be \"json\" or \"msgpack\"");
    }
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) {
      throw new TypeError("wsgate: no global WebSocket; pass one, e.g. new Client({WebSocket: (await import(\"ws\")).WebSocket, ...})");
    }
    this.state = "disconnected";
    this.user = "";
    this.conn = "";
    this.instance = "";
    this.exp = 0;           // the token's exp (UNIX seconds), 0 = none
    this.lastClose = null;  // {code, reason}
    this.lastError = null;  // the WsgateError that stopped the client
    this.rooms = new Map(); // room -> {seq: last seq seen or undefined}
    this.channels = new Set();
    this.seen = new SeenIDs(this.opts.dedupeSize);
    this.listeners = new Map();
    this.pending = new Map(); // request id -> {resolve, reject, timer, type}
    this.queue = [];          // requests waiting for the connection
    this.nextID = 0;
    this.attempt = 0;
    this.ws = null;
    this.timers = { reconnect: null, ping: null, pong: null, refresh: null, connect: null };
    this.reconnectAfter = -1; // from a `reconnect {after_ms}`: the next delay
    this.wanted = false;
    this.connectWaiters = [];
    this.token = "";
  }

  // --- events ---

  /** on registers fn for an event; it returns a function that removes it. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    const s = this.listeners.get(event);
    if (s) s.delete(fn);
  }
  once(event, fn) {
    const off = this.on(event, (...a) => { off(); fn(...a); });
    return off;
  }
  emit(event, ...args) {
    const s = this.listeners.get(event);
    if (!s) return;
    for (const fn of [...s]) {
      try { fn(...args); } catch (e) { if (event !== "error") this.emit("error", e); }
    }
  }

  // --- lifecycle ---

  /**
   * connect starts the client; the promise resolves with auth:ok on the
   * first successful authentication and rejects when the client stops
   * (a do-not-reconnect close or close()). Later drops reconnect by
   * themselves.
   */
  connect() {
    if (this.state === "connected") return Promise.resolve(this.authInfo);
    const p = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (!this.wanted) {
      this.wanted = true;
      this.attempt = 0;
      this.lastError = null;
      this.open();
    }
    return p;
  }

  /** close stops the client for good (code 1000) and rejects what waits. */
  close() {
    this.wanted = false;
    this.stopTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      this.detach(ws);
      try { ws.close(1000, "bye"); } catch (e) { /* already closing */ }
    }
    const err = new WsgateError("closed", "client closed");
    this.failAll(err);
    this.rejectConnect(err);
    this.setState("closed");
  }

  setState(s) {
    if (this.state === s) return;
    const prev = this.state;
    this.state = s;
    this.emit("state", s, prev);
  }

  stopTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = null;
    }
  }

  async open() {
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = null;
    if (!this.wanted) return;
    this.setState("connecting");
    this.emit("connecting", { attempt: this.attempt });
    let token;
    try {
      token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
    } catch (e) {
      this.emit("error", new WsgateError("token", "token function failed: " + (e && e.message), { cause: e }));
      this.scheduleReconnect(0);
      return;
    }
    if (!this.wanted) return;
    this.token = token;
    const proto = this.opts.encoding === "msgpack" ? "gw.msgpack" : "gw.json";
    let ws;
    try {
      ws = new this.WebSocket(this.opts.url, [proto]);
    } catch (e) {
      this.stopWith(new WsgateError("bad_url", String(e && e.message || e)));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.authed = false;
    this.timers.connect = setTimeout(() => {
      if (this.ws === ws) this.lost(ws, 4000, "connect timeout");
    }, this.opts.connectTimeoutMs);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      // The token goes in the first message, not the URL, so it stays out
      // of access logs.
      this.write({ type: "auth", token: token });
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let m;
      try {
        m = typeof ev.data === "string" ? JSON.parse(ev.data) : msgpackDecode(new Uint8Array(ev.data));
      } catch (e) {
        this.emit("error", new WsgateError("bad_message", "undecodable message from the gateway: " + e.message));
        return;
      }
      if (m && typeof m === "object") this.onMessage(m);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.lost(ws, ev.code, ev.reason || "");
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not null: Node's ws emits "error" when a socket still connecting is
    // closed, and an EventEmitter error without a listener throws.
    ws.onerror = () => {};
  }

  // lost handles the end of the current socket.
  lost(ws, code, reason) {
    this.detach(ws);
    if (this.ws === ws) this.ws = null;
    try { ws.close(); } catch (e) { /* closed already */ }
    this.stopTimers();
    this.lastClose = { code, reason };
    this.emit("disconnected", { code, reason });
    this.failAll(new WsgateError("disconnected", "connection lost (" + code + (reason ? " " + reason : "") + ")", { closeCode: code }));
    if (!this.wanted) return;
    if (!shouldReconnect(code)) {
      const what = code === 4501 ? "authentication failed" : code >= 4500 ? "the gateway refused this client" : "protocol or policy error";
      this.stopWith(new WsgateError("closed", what + " (close " + code + (reason ? " " + reason : "") + "); not reconnecting", { closeCode: code, reason }));
      return;
    }
    this.scheduleReconnect(code);
  }

  stopWith(err) {
    this.wanted = false;
    this.lastError = err;
    this.failAll(err);
    this.rejectConnect(err);
    this.setState("closed");
    this.emit("error", err);
  }

  scheduleReconnect(code) {
    let delay;
    let hinted = false;
    if (this.reconnectAfter >= 0) {
      // The gateway spread its clients over its drain time already.
      delay = this.reconnectAfter;
      hinted = true;
      this.reconnectAfter = -1;
    } else {
      delay = backoffDelay(this.attempt, this.opts.backoffBaseMs, this.opts.backoffMaxMs);
    }
    this.attempt++;
    this.setState("reconnecting");
    this.emit("reconnecting", { delay, code, attempt: this.attempt, hinted });
    this.timers.reconnect = setTimeout(() => this.open(), delay);
  }

  rejectConnect(err) {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const x of w) x.reject(err);
  }

  // --- wire ---

  write(obj) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(this.opts.encoding === "msgpack" ? msgpackEncode(obj) : JSON.stringify(obj));
    return true;
  }

  /**
   * request sends obj with a fresh id and resolves with the reply (or
   * rejects with the error reply, a timeout or a lost connection). While
   * not connected it waits for the connection, within the same timeout.
   */
  request(obj, opts) {
    const timeoutMs = (opts && opts.timeoutMs) || this.opts.requestTimeoutMs;
    return new Promise((resolve, reject) => {
      if (!this.wanted) {
        reject(new WsgateError("closed", "client is not started or was closed"));
        return;
      }
      const id = "r" + (++this.nextID);
      const req = { id, obj: Object.assign({}, obj, { id }), resolve, reject, timer: null, internal: !!(opts && opts.internal) };
      req.timer = setTimeout(() => {
        this.pending.delete(id);
        const qi = this.queue.indexOf(req);
        if (qi >= 0) this.queue.splice(qi, 1);
        reject(new WsgateError("timeout", obj.type + " not answered in " + timeoutMs + "ms", { id }));
      }, timeoutMs);
      if (this.state === "connected" || req.internal) {
        this.pending.set(id, req);
        this.write(req.obj);
      } else if (this.queue.length >= this.opts.maxQueued) {
        clearTimeout(req.timer);
        reject(new WsgateError("rate_limited", "too many requests waiting for the connection"));
      } else {
        this.queue.push(req);
      }
    });
  }

  failAll(err) {
    for (const req of this.pending.values()) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    this.pending.clear();
    if (!this.wanted) {
      for (const req of this.queue) {
        clearTimeout(req.timer);
        req.reject(err);
      }
      this.queue = [];
    }
  }

  flushQueue() {
    const q = this.queue;
    this.queue = [];
    for (const req of q) {
      this.pending.set(req.id, req);
      this.write(req.obj);
    }
  }

  onMessage(m) {
    // Replies carry the request's id; a delivered `message` carries the
    // gateway's message id in the same field, so it is never a reply.
    if (m.type !== "message" && typeof m.id === "string" && this.pending.has(m.id)) {
      const req = this.pending.get(m.id);
      this.pending.delete(m.id);
      clearTimeout(req.timer);
      if (m.type === "error") {
        req.reject(new WsgateError(m.code || "error", m.message || "", { reason: m.reason, id: m.id }));
      } else {
        req.resolve(m);
      }
      // joined/left/subscribed... still update the local state below.
    }
    switch (m.type) {
      case "auth:ok": return this.onAuthOK(m);
      case "auth:fail":
        this.emit("error", new WsgateError("auth_failed", m.reason || "", { closeCode: 4501 }));
        return;
      case "message": return this.onDelivery(m);
      case "user:joined":
      case "user:left":
        this.emit(m.type, { room: m.room, user: m.user });
        this.emit("presence", m);
        return;
      case "gap":
        this.emit("gap", m);
        if (m.room && this.rooms.has(m.room)) this.resume(m.room).catch((e) => this.emit("error", e));
        return;
      case "reconnect":
        this.reconnectAfter = Math.max(0, Number(m.after_ms) || 0);
        this.emit("reconnect", { afterMs: this.reconnectAfter });
        return;
      case "token_expired":
        this.emit("token_expired", m);
        if (this.opts.autoRefresh && typeof this.opts.token === "function") this.refresh().catch((e) => this.emit("error", e));
        return;
      case "refreshed":
        this.exp = m.exp || 0;
        this.scheduleRefresh();
        this.emit("refreshed", { exp: this.exp });
        return;
      case "left":
        if (m.reason) { // the gateway ended a membership (revoked, server)
          if (m.room) this.rooms.delete(m.room);
          if (m.channel) this.channels.delete(m.channel);
          this.emit("left", m);
        }
        return;
      case "joined":
        if (m.server && m.room && !this.rooms.has(m.room)) this.rooms.set(m.room, { seq: undefined });
        if (m.server) this.emit("joined", m);
        return;
      case "error":
        if (!m.id) this.emit("error", new WsgateError(m.code || "error", m.message || ""));
        return;
    }
  }

  onAuthOK(m) {
    clearTimeout(this.timers.connect);
    this.timers.connect = null;
    this.user = m.user;
    this.conn = m.conn;
    this.instance = m.instance;
    this.exp = m.exp || 0;
    this.authInfo = { user: m.user, conn: m.conn, instance: m.instance, exp: this.exp };
    this.scheduleRefresh();
    this.schedulePing();
    this.restore().then(() => {
      if (!this.wanted || this.state === "connected") return;
      this.attempt = 0;
      this.setState("connected");
      const reconnected = this.everConnected === true;
      this.everConnected = true;
      this.emit("connected", Object.assign({ reconnected }, this.authInfo));
      const w = this.connectWaiters;
      this.connectWaiters = [];
      for (const x of w) x.resolve(this.authInfo);
      this.flushQueue();
    }, () => { /* lost while restoring: the close handler reconnects */ });
  }

  // restore re-joins rooms, re-subscribes channels and resumes each room
  // from its last seq, before queued requests go out.
  async restore() {
    const ws = this.ws;
    const jobs = [];
    for (const [room, st] of this.rooms) {
      jobs.push(this.request({ type: "join", room }, { internal: true }).then(() => {
        if (st.seq !== undefined) return this.resume(room);
      }, (e) => {
        if (e.code === "forbidden" || e.code === "not_joined") this.rooms.delete(room);
        if (e.code !== "disconnected") this.emit("error", new WsgateError(e.code, "re-join " + room + ": " + e.message));
      }));
    }
    for (const ch of this.channels) {
      jobs.push(this.request({ type: "subscribe", channel: ch }, { internal: true }).catch((e) => {
        if (e.code === "forbidden") this.channels.delete(ch);
        if (e.code !== "disconnected") this.emit("error", new WsgateError(e.code, "re-subscribe " + ch + ": " + e.message));
      }));
    }
    await Promise.all(jobs);
    if (this.ws !== ws) throw new WsgateError("disconnected", "lost during restore");
  }

  /**
   * resume asks for what the room received after the last seq this client
   * saw (history mode). Replayed messages arrive as `message` events, with
   * duplicates dropped. It resolves with `resumed` (or null when there is
   * nothing to resume from, or history is off).
   */
  async resume(room) {
    const st = this.rooms.get(room);
    if (!st || st.seq === undefined) return null;
    try {
      const r = await this.request({ type: "resume", room, since: st.seq }, { internal: true });
      if (typeof r.seq === "number" && (st.seq === undefined || r.seq > st.seq)) st.seq = r.seq;
      this.emit("resumed", r);
      if (r.recovered === false) this.emit("gap", { type: "gap", room, reason: "history", recovered: false });
      return r;
    } catch (e) {
      if (e.code === "unavailable") return null; // history off
      throw e;
    }
  }

  onDelivery(m) {
    if (m.id && !this.seen.add(m.id)) return; // a duplicate (replay overlap, own message)
    if (m.room && typeof m.seq === "number") {
      const st = this.rooms.get(m.room);
      if (st && (st.seq === undefined || m.seq > st.seq)) st.seq = m.seq;
    }
    this.emit("message", m);
  }

  // --- keepalive and token refresh ---

  schedulePing() {
    clearTimeout(this.timers.ping);
    if (!this.opts.pingIntervalMs) return;
    const ws = this.ws;
    this.timers.ping = setTimeout(() => {
      if (this.ws !== ws) return;
      this.request({ type: "ping" }, { internal: true, timeoutMs: Math.min(this.opts.requestTimeoutMs, this.opts.pingIntervalMs) })
        .then(() => { if (this.ws === ws) this.schedulePing(); })
        .catch((e) => {
          if (this.ws === ws && e.code === "timeout") this.lost(ws, 4000, "no pong");
        });
    }, this.opts.pingIntervalMs);
  }

  scheduleRefresh() {
    clearTimeout(this.timers.refresh);
    this.timers.refresh = null;
    if (!this.exp || !this.opts.autoRefresh || typeof this.opts.token !== "function") return;
    const left = this.exp * 1000 - Date.now();
    const margin = Math.min(this.opts.refreshMarginMs, Math.max(0, left / 2));
    this.timers.refresh = setTimeout(() => {
      this.refresh().catch((e) => this.emit("error", e));
    }, Math.max(0, left - margin));
  }

  /**
   * refresh gets a fresh token (from the token function, or the one given)
   * and sends it as `refresh` (PROTOCOL.md section 9): no reconnect.
   */
  async refresh(token) {
    if (token === undefined) {
      if (typeof this.opts.token !== "function") throw new WsgateError("token", "no token function to refresh with");
      token = await this.opts.token();
    }
    const r = await this.request({ type: "refresh", token }, { internal: true });
    this.token = token;
    return { exp: r.exp || 0 };
  }

  // --- requests ---

  /** join joins a room; the client re-joins it after every reconnect. */
  async join(room) {
    const r = await this.request({ type: "join", room });
    if (!this.rooms.has(room)) this.rooms.set(room, { seq: undefined });
    return r;
  }
  /** leave leaves a room; it is not re-joined any more. */
  async leave(room) {
    this.rooms.delete(room);
    return this.request({ type: "leave", room });
  }
  async subscribe(channel) {
    const r = await this.request({ type: "subscribe", channel });
    this.channels.add(channel);
    return r;
  }
  async unsubscribe(channel) {
    this.channels.delete(channel);
    return this.request({ type: "unsubscribe", channel });
  }
  /**
   * message sends data to a room; it resolves with {mid, seq?}: the id the
   * receivers see (and seq in history mode). The id is remembered, so the
   * client's own message never comes back as a `message` event in a replay.
   */
  async message(room, data, opts) {
    const obj = { type: "message", room, data };
    if (opts && opts.priority) obj.priority = opts.priority;
    const r = await this.request(obj, opts);
    if (r.mid) this.seen.add(r.mid);
    return { mid: r.mid, seq: r.seq };
  }
  /** publish sends data to a channel's subscribers; resolves with {mid}. */
  async publish(channel, data, opts) {
    const obj = { type: "publish", channel, data };
    if (opts && opts.priority) obj.priority = opts.priority;
    if (opts && opts.filter) obj.filter = opts.filter;
    const r = await this.request(obj, opts);
    return { mid: r.mid };
  }
  /**
   * send delivers data to every connection of a user: {mid, delivered,
   * remote}; mid is the id the receivers see.
   */
  async send(to, data, opts) {
    const r = await this.request({ type: "send", to, data }, opts);
    return { mid: r.mid, delivered: r.delivered, remote: !!r.remote };
  }
  /** presence lists the users in a room, across instances. */
  async presence(room, opts) {
    const r = await this.request({ type: "presence", room }, opts);
    return r.users || [];
  }
  /** rpc calls a service method over the gateway (section 10): its reply data. */
  async rpc(method, data, opts) {
    const r = await this.request({ type: "rpc", method, data }, opts);
    return r.data;
  }
  /** ping round-trips a `ping`; resolves with the gateway's pong ts. */
  async ping(opts) {
    const r = await this.request({ type: "ping" }, opts);
    return r.ts;
  }
}

/** connect is new Client(opts) plus connect(): it resolves with the client. */
export async function connect(opts) {
  const c = new Client(opts);
  await c.connect();
  return c;
}

export const _internal = { STATES, DEFAULTS };
