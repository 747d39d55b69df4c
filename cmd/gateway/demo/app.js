// wsgate demo chat, built on the client library the gateway serves at
// /client/wsgate.js (clients/js): the library reconnects with backoff,
// honours drain hints, re-joins and resumes the room, drops duplicates (its
// own messages too, by the ack's mid), and keeps the connection alive with
// pings. This file only draws. No build step; served from the admin port.
//
// Query parameters prefill the form: ?token=...&room=...&url=...&enc=msgpack;
// with a token it connects at once. window.demo exposes the page's state for
// tests and the curious.
import { Client, VERSION } from "../client/wsgate.js";

const $ = (id) => document.getElementById(id);

const demo = {
  state: "closed",      // closed | connecting | joined | left | waiting
  user: "",
  instance: "",
  room: "lobby",
  messages: [],         // received: {room, from, text, id, seq}
  presence: [],         // users in the room, kept live by user:joined / user:left
  connects: 0,          // successful (re)connections
  reconnects: 0,        // those after the first
  lastClose: null,      // {code, reason}
  closes: [],           // every close code seen (last 50)
  lastReconnectAfter: null,
  exp: 0,               // the token's exp (UNIX seconds); 0 = none
  expired: false,       // token_expired came and no refresh yet
  refreshes: 0,
  errors: [],
  version: VERSION,
  client: null,
  send: send,
  refresh: refresh,
  connect: start,
  disconnect: stop,
};
window.demo = demo;

let client = null;

function log(text) {
  const li = document.createElement("li");
  li.textContent = new Date().toLocaleTimeString() + " " + text;
  const ol = $("log");
  ol.appendChild(li);
  while (ol.children.length > 200) ol.removeChild(ol.firstChild);
  ol.scrollTop = ol.scrollHeight;
}

function setState(s, detail) {
  demo.state = s;
  const el = $("status");
  el.className = "status " + s;
  el.textContent = detail ? s + " (" + detail + ")" : s;
  const live = s === "joined";
  const wanted = client !== null;
  $("text").disabled = !live;
  $("send").disabled = !live;
  $("connect").disabled = wanted;
  $("disconnect").disabled = !wanted;
  $("refresh").disabled = !(s === "joined" || s === "left");
}

function addLine(from, text, cls) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  if (from) {
    const b = document.createElement("span");
    b.className = "from";
    b.textContent = from;
    li.appendChild(b);
  }
  li.appendChild(document.createTextNode(text));
  const ol = $("messages");
  ol.appendChild(li);
  ol.scrollTop = ol.scrollHeight;
}

function renderPresence() {
  demo.presence.sort();
  const ul = $("presence");
  ul.textContent = "";
  for (const u of demo.presence) {
    const li = document.createElement("li");
    li.textContent = u === demo.user ? u + " (you)" : u;
    ul.appendChild(li);
  }
}

function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function expText(exp) {
  return exp ? new Date(exp * 1000).toLocaleTimeString() : "never";
}

function send(text) {
  if (demo.state !== "joined" || !text) return false;
  addLine(demo.user, text, "mine");
  client.message(demo.room, { text: text }).catch((e) => {
    demo.errors.push(e.message);
    addLine("", "not sent: " + e.message, "sys");
  });
  return true;
}

// refresh sends the token field's (new) token for the same user: the
// gateway swaps the claims in place, no reconnect (PROTOCOL.md section 9).
function refresh() {
  const token = $("token").value.trim();
  if (!client || !token) return false;
  client.refresh(token).then((r) => {
    demo.exp = r.exp;
  }, (e) => {
    demo.errors.push(e.message);
    addLine("", "refresh refused: " + e.message, "sys");
  });
  return true;
}

// Presence is one snapshot (the `presence` reply) kept live by user:joined
// and user:left. The snapshot may be older than an event that arrives
// before it, so the events seen while a query is in flight are applied
// again on top of it: for each user the latest event wins.
const presenceLogs = new Set();

function applyPresence(e) {
  if (e.type === "user:joined") {
    if (!demo.presence.includes(e.user)) demo.presence.push(e.user);
  } else {
    demo.presence = demo.presence.filter((u) => u !== e.user);
  }
}

async function loadPresence() {
  const events = [];
  presenceLogs.add(events);
  try {
    const users = await client.presence(demo.room);
    demo.presence = users.slice();
    for (const e of events) applyPresence(e);
    renderPresence();
  } catch (e) {
    log("presence: " + e.message);
  } finally {
    presenceLogs.delete(events);
  }
}

function onPresenceEvent(e) {
  if (e.room !== demo.room) return;
  applyPresence(e);
  for (const events of presenceLogs) events.push(e);
  renderPresence();
  addLine("", e.user + (e.type === "user:joined" ? " joined" : " left"), "sys");
}

function start() {
  if (client) return;
  const url = $("url").value.trim();
  const enc = new URLSearchParams(location.search).get("enc") === "msgpack" ? "msgpack" : "json";
  demo.room = $("room").value.trim() || "lobby";
  $("roomname").textContent = demo.room;
  // The token is read from the field at every (re)connect. It is refreshed
  // by hand (the Refresh button): a page cannot mint tokens.
  const c = new Client({ url, token: () => $("token").value.trim(), encoding: enc, autoRefresh: false });
  client = demo.client = c;

  c.on("connecting", (e) => setState("connecting", url + (e.attempt ? " attempt " + (e.attempt + 1) : "")));
  c.on("reconnecting", (e) => {
    setState("waiting", "reconnect in " + e.delay + "ms after " + e.code);
    log("reconnecting in " + e.delay + "ms" + (e.hinted ? " (the gateway's hint)" : "") + ", attempt " + e.attempt);
  });
  c.on("reconnect", (e) => {
    demo.lastReconnectAfter = e.afterMs;
    log("gateway going away; reconnect after " + e.afterMs + "ms");
  });
  c.on("disconnected", (e) => {
    demo.lastClose = e;
    demo.closes.push(e.code);
    if (demo.closes.length > 50) demo.closes.shift();
    log("closed " + e.code + (e.reason ? " " + e.reason : ""));
  });
  c.on("connected", (e) => {
    demo.user = e.user;
    demo.instance = e.instance;
    demo.exp = e.exp;
    demo.expired = false;
    demo.connects++;
    if (e.reconnected) demo.reconnects++;
    log("authenticated as " + e.user + " on " + e.instance + "; token expires " + expText(e.exp));
    // The library re-joins (and resumes) rooms it had joined; the room is
    // joined here the first time, or when an earlier join was cut short.
    if (!c.rooms.has(demo.room)) {
      c.join(demo.room).then(() => {
        setState("joined", demo.user + " in " + demo.room);
        addLine("", "joined " + demo.room, "sys");
        loadPresence();
      }, (err) => {
        demo.errors.push(err.message);
        if (err.code !== "disconnected") addLine("", "could not join " + demo.room + ": " + err.message, "sys");
      });
    } else {
      setState("joined", demo.user + " in " + demo.room);
      addLine("", "reconnected to " + demo.room, "sys");
      loadPresence();
    }
  });
  c.on("message", (m) => {
    demo.messages.push({ room: m.room, from: m.from, text: textOf(m.data), id: m.id, seq: m.seq });
    addLine(m.from || "service", textOf(m.data));
  });
  c.on("presence", onPresenceEvent); // user:joined and user:left, in order
  c.on("gap", (e) => {
    addLine("", e.recovered === false ? "some messages were too old to recover"
      : (e.dropped ? e.dropped + " messages were dropped" : "messages may be missing (" + (e.reason || "gap") + ")"), "sys");
  });
  c.on("token_expired", (e) => {
    demo.expired = true;
    log("token expired; closing in " + e.close_in_ms + "ms unless refreshed");
    addLine("", "your token expired: paste a fresh one above and press Refresh within " +
      Math.round(e.close_in_ms / 1000) + "s", "sys");
    $("token").focus();
  });
  c.on("refreshed", (e) => {
    demo.exp = e.exp;
    demo.expired = false;
    demo.refreshes++;
    log("token refreshed; expires " + expText(e.exp));
    addLine("", "token refreshed (expires " + expText(e.exp) + ")", "sys");
  });
  c.on("left", (e) => {
    addLine("", "left " + (e.room || e.channel) + " (" + e.reason + ")", "sys");
    if (e.room === demo.room) setState("left", e.reason);
  });
  c.on("error", (e) => {
    demo.errors.push(e.message);
    log("error: " + e.message);
  });
  c.connect().catch((e) => {
    // A do-not-reconnect close (bad token, banned, ...): the library stopped.
    client = demo.client = null;
    setState("closed", e.closeCode ? String(e.closeCode) : "error");
    addLine("", "disconnected: " + e.message, "sys");
  });
}

function stop() {
  if (!client) return;
  const c = client;
  client = demo.client = null;
  c.close();
  demo.presence = [];
  renderPresence();
  setState("closed", "by you");
}

$("connect").onclick = start;
$("refresh").onclick = refresh;
$("disconnect").onclick = stop;
$("sendform").onsubmit = (ev) => {
  ev.preventDefault();
  if (send($("text").value.trim())) $("text").value = "";
};

// Defaults: the query string, then the gateway's own config.
const q = new URLSearchParams(location.search);
$("token").value = q.get("token") || "";
if (q.get("room")) $("room").value = q.get("room");
$("roomname").textContent = $("room").value;
$("libversion").textContent = VERSION;
const fallback = "ws://" + (location.hostname || "127.0.0.1") + ":8080/ws";
fetch("config.json", { cache: "no-store" })
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}))
  .then((cfg) => {
    $("url").value = q.get("url") || cfg.ws_url || fallback;
    if (cfg.token_command) $("tokencmd").textContent = cfg.token_command;
    setState("closed");
    if ($("token").value) start();
  });
