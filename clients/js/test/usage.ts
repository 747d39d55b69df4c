// usage.ts is type-checked (never run) by types.test.js: it uses the whole
// public API the way docs/client.md and README.md show it, so a declaration
// that does not compile or does not fit the documented usage fails the test.
import {
  Client, connect, WsgateError, SeenIDs, VERSION, shouldReconnect, backoffDelay,
  msgpackEncode, msgpackDecode,
  type ClientOptions, type Data, type Message, type State, type AuthInfo, type Reply,
} from "../wsgate.js";

async function main(): Promise<void> {
  const opts: ClientOptions = {
    url: "ws://127.0.0.1:8080/ws",
    token: async () => "token",
    encoding: "msgpack",
    requestTimeoutMs: 5000,
    backoffBaseMs: 100,
    backoffMaxMs: 10_000,
  };
  const client = await connect(opts);
  const other = new Client({ url: "ws://127.0.0.1:8080/ws", token: "t" });
  const info: AuthInfo = await other.connect();
  const user: string = info.user + client.user + client.conn + client.instance;
  const exp: number = client.exp;
  const state: State = client.state;

  const off = client.on("message", (m: Message) => {
    const text: string = `${m.room ?? m.channel ?? m.to}: ${JSON.stringify(m.data)} ${m.id} ${m.seq ?? 0} ${m.ts}`;
    void text;
  });
  off();
  client.once("presence", (e) => { const who: string = e.user + e.room + e.type; void who; });
  client.on("gap", (e) => { const n: number = e.dropped ?? 0; void n; });
  client.on("state", (now, before) => { const s: State = now; const p: State = before; void s; void p; });
  client.on("error", (err) => { const code: string = err.code; void code; });
  client.on("reconnecting", ({ delay, attempt }) => { void (delay + attempt); });

  const joined: Reply = await client.join("lobby");
  const sent: { mid: string; seq?: number } = await client.message("lobby", { text: "hi", n: [1, 2, true, null] });
  const pub: { mid: string } = await client.publish("news", "x", { priority: "high", filter: { tag: "region", in: ["eu"] } });
  const dm = await client.send("bob", new Uint8Array([1, 2]));
  const delivered: number = dm.delivered;
  const dmID: string = dm.mid;
  const present: string[] = await client.presence("lobby", { timeoutMs: 1000 });
  const answer: Data = await client.rpc("svc.echo", { q: 1 });
  const rtt: number = await client.ping();
  const refreshed: { exp: number } = await client.refresh();
  const resumed = await client.resume("lobby");
  const recovered: boolean = resumed === null ? false : resumed.recovered;
  const raw: Reply = await client.request({ type: "ping" });
  await client.subscribe("news");
  await client.unsubscribe("news");
  await client.leave("lobby");
  for (const [room, { seq }] of client.rooms) void [room, seq];
  for (const ch of client.channels) void ch;
  const last = client.lastClose;
  if (last) { const c: number = last.code; void c; }
  client.close();

  const e = new WsgateError("timeout", "no reply", { id: "7" });
  const isErr: Error = e;
  const seen = new SeenIDs(16);
  const fresh: boolean = seen.add("a") && seen.has("a");
  const again: boolean = shouldReconnect(1006);
  const wait: number = backoffDelay(3, 100, 10_000, Math.random);
  const bytes: Uint8Array = msgpackEncode({ a: [1, "b"] });
  const back: Data = msgpackDecode(bytes);
  void [dmID, user, exp, state, joined, sent, pub, delivered, present, answer, rtt, refreshed, recovered, raw, isErr, fresh, again, wait, back, VERSION];
}
void main;
