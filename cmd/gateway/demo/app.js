// wsgate demo chat: a plain-JavaScript client of the gateway's gw.json
// protocol (PROTOCOL.md). No build step; served from the admin port.
//
// Query parameters prefill the form: ?token=...&room=...&url=...; with a
// token it connects at once. window.demo exposes the client's state for
// tests and the curious.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // Close codes after which a client must not reconnect until something
  // changes (PROTOCOL.md section 4); 1000 is our own normal close.
  function reconnectable(code) {
    if (code === 1000) return false;
    if (code === 1002 || code === 1007 || code === 1008 || code === 1009) return false;
    if (code >= 4500 && code <= 4999) return false;
    // 1001, 1011, 1012, 1013 and 4000-4499 are the reconnect class; 1005,
    // 1006 and anything else unknown is a network failure: reconnect too.
    return true;
  }

  const BACKOFF_BASE_MS = 250;
  const BACKOFF_MAX_MS = 5000;

  const demo = {
    state: "closed",      // closed | connecting | authenticating | joined | left | waiting
    user: "",
    instance: "",
    room: "lobby",
    messages: [],         // {room, from, text, id, seq}
    presence: [],
    lastSeq: {},          // room -> last seq seen (history mode)
    connects: 0,          // successful authentications
    reconnects: 0,        // successful authentications after the first
    lastClose: null,      // {code, reason}
    closes: [],           // every close code seen (last 50)
    lastReconnectAfter: null,
    exp: 0,               // the token's exp (UNIX seconds) from auth:ok / refreshed; 0 = none
    expired: false,       // token_expired came and no refresh yet
    refreshes: 0,         // refreshed answers
    errors: [],
    send: send,
    refresh: refresh,
    connect: start,
    disconnect: stop,
  };
  window.demo = demo;

  let ws = null;
  let wanted = false;       // the user wants to be connected
  let attempt = 0;          // failed attempts since the last success
  let reconnectAt = 0;      // from a `reconnect` message: not before this time
  let timer = null;
  let msgID = 0;
  let seen = new Set();     // gateway message ids, to drop duplicates after resume

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

  function out(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function send(text) {
    if (demo.state !== "joined" || !text) return false;
    out({ type: "message", room: demo.room, data: { text: text }, id: "c" + (++msgID) });
    addLine(demo.user, text, "mine");
    return true;
  }

  // refresh sends the token field's (new) token for the same user: the
  // gateway swaps the claims in place, no reconnect (PROTOCOL.md section 9).
  function refresh() {
    const token = $("token").value.trim();
    if (!ws || ws.readyState !== WebSocket.OPEN || !demo.user || !token) return false;
    out({ type: "refresh", token: token, id: "refresh" });
    return true;
  }

  function expText(exp) {
    return exp ? new Date(exp * 1000).toLocaleTimeString() : "never";
  }

  function connect() {
    clearTimeout(timer);
    timer = null;
    if (!wanted) return;
    const url = $("url").value.trim();
    const token = $("token").value.trim();
    demo.room = $("room").value.trim() || "lobby";
    $("roomname").textContent = demo.room;
    setState("connecting", url);
    let sock;
    try {
      sock = new WebSocket(url, ["gw.json"]);
    } catch (e) {
      log("bad URL: " + e);
      demo.errors.push(String(e));
      scheduleReconnect(0);
      return;
    }
    ws = sock;
    sock.onopen = () => {
      if (ws !== sock) return;
      setState("authenticating");
      // The token goes in the first message, not the URL, so it stays out
      // of proxies' access logs.
      sock.send(JSON.stringify({ type: "auth", token: token, id: "auth" }));
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { log("not JSON: " + ev.data); return; }
      onMessage(m);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      demo.lastClose = { code: ev.code, reason: ev.reason };
      demo.closes.push(ev.code);
      if (demo.closes.length > 50) demo.closes.shift();
      log("closed " + ev.code + (ev.reason ? " " + ev.reason : ""));
      if (wanted && reconnectable(ev.code)) {
        scheduleReconnect(ev.code);
      } else {
        wanted = false;
        setState("closed", String(ev.code));
        addLine("", "disconnected (" + ev.code + (ev.reason ? ": " + ev.reason : "") + ")", "sys");
      }
    };
  }

  // scheduleReconnect waits what a `reconnect` message asked for, else an
  // exponential backoff with full jitter.
  function scheduleReconnect(code) {
    let delay;
    const now = Date.now();
    if (reconnectAt > now) {
      delay = reconnectAt - now + Math.floor(Math.random() * 100);
    } else if (reconnectAt > 0) {
      delay = Math.floor(Math.random() * 100); // the server already spread us out
    } else {
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
      delay = Math.floor(Math.random() * cap);
    }
    reconnectAt = 0;
    attempt++;
    setState("waiting", "reconnect in " + delay + "ms after " + code);
    log("reconnecting in " + delay + "ms (attempt " + attempt + ")");
    timer = setTimeout(connect, delay);
  }

  function onMessage(m) {
    switch (m.type) {
      case "auth:ok":
        demo.user = m.user;
        demo.instance = m.instance;
        demo.exp = m.exp || 0;
        demo.expired = false;
        demo.connects++;
        if (demo.connects > 1) demo.reconnects++;
        attempt = 0;
        log("authenticated as " + m.user + " on " + m.instance + "; token expires " + expText(demo.exp));
        out({ type: "join", room: demo.room, id: "join" });
        break;
      case "auth:fail":
        log("auth failed: " + m.reason);
        demo.errors.push("auth:fail " + m.reason);
        addLine("", "authentication failed: " + m.reason, "sys");
        break;
      case "joined":
        setState("joined", demo.user + " in " + m.room);
        addLine("", "joined " + m.room + (demo.reconnects ? " (reconnected)" : ""), "sys");
        out({ type: "presence", room: m.room, id: "presence" });
        if (demo.lastSeq[m.room] !== undefined) {
          out({ type: "resume", room: m.room, since: demo.lastSeq[m.room], id: "resume" });
        }
        break;
      case "presence":
        if (m.room === demo.room) {
          demo.presence = (m.users || []).slice().sort();
          renderPresence();
        }
        break;
      case "user:joined":
      case "user:left":
        addLine("", m.user + (m.type === "user:joined" ? " joined" : " left"), "sys");
        out({ type: "presence", room: m.room, id: "presence" });
        break;
      case "message":
        if (m.id && seen.has(m.id)) break;
        if (m.id) {
          if (seen.size > 10000) seen = new Set();
          seen.add(m.id);
        }
        if (typeof m.seq === "number" && m.room) demo.lastSeq[m.room] = m.seq;
        demo.messages.push({ room: m.room, from: m.from, text: textOf(m.data), id: m.id, seq: m.seq });
        addLine(m.from || "service", textOf(m.data));
        break;
      case "resumed":
        if (typeof m.seq === "number") demo.lastSeq[m.room] = m.seq;
        if (m.recovered === false) addLine("", "some messages were too old to recover", "sys");
        break;
      case "token_expired":
        demo.expired = true;
        log("token expired; closing in " + m.close_in_ms + "ms unless refreshed");
        addLine("", "your token expired: paste a fresh one above and press Refresh within " +
          Math.round(m.close_in_ms / 1000) + "s", "sys");
        $("token").focus();
        break;
      case "refreshed":
        demo.exp = m.exp || 0;
        demo.expired = false;
        demo.refreshes++;
        log("token refreshed; expires " + expText(demo.exp));
        addLine("", "token refreshed (expires " + expText(demo.exp) + ")", "sys");
        break;
      case "left":
        if (m.reason) addLine("", "left " + (m.room || m.channel) + " (" + m.reason + ")", "sys");
        if (m.room === demo.room) setState("left", m.reason);
        break;
      case "reconnect":
        demo.lastReconnectAfter = m.after_ms;
        reconnectAt = Date.now() + (m.after_ms || 0);
        log("gateway going away; reconnect after " + m.after_ms + "ms");
        break;
      case "gap":
        addLine("", m.dropped + " low-priority messages were dropped", "sys");
        break;
      case "error":
        if (m.id === "resume" && m.code === "unavailable") {
          log("resume unavailable (history off)");
          break;
        }
        if (m.id === "refresh") addLine("", "refresh refused: " + m.code + " " + m.message, "sys");
        demo.errors.push(m.code + ": " + m.message);
        log("error " + m.code + ": " + m.message);
        break;
      case "ack":
      case "pong":
        break;
      default:
        log("unhandled " + m.type);
    }
  }

  function start() {
    if (wanted) return;
    wanted = true;
    attempt = 0;
    reconnectAt = 0;
    connect();
  }

  function stop() {
    wanted = false;
    clearTimeout(timer);
    timer = null;
    if (ws) ws.close(1000, "bye");
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
})();
