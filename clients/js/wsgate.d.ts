// Type declarations for wsgate.js (hand-written; the library itself is
// plain JavaScript). See README.md and docs/client.md.

export declare const VERSION: string;

/** Any JSON value (msgpack adds Uint8Array, which JSON receivers get as base64). */
export type Data = null | boolean | number | string | Uint8Array | Data[] | { [key: string]: Data };

/** A token, or a function that returns one (called on every connect and before exp). */
export type TokenSource = string | (() => string | Promise<string>);

/** The WebSocket constructor to use (browsers: the global one; Node < 22: the `ws` package). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): any;
}

export interface ClientOptions {
  /** ws:// or wss:// URL of the gateway's WebSocket endpoint, e.g. ws://host:8080/ws */
  url: string;
  token: TokenSource;
  /** "json" (gw.json, default) or "msgpack" (gw.msgpack, binary frames). */
  encoding?: "json" | "msgpack";
  WebSocket?: WebSocketConstructor;
  /** Timeout of every request with an id (default 10000). */
  requestTimeoutMs?: number;
  /** Socket open plus auth:ok (default 10000); past it the attempt counts as failed. */
  connectTimeoutMs?: number;
  /** Keepalive `ping` interval (default 25000, 0 = none); no pong in time reconnects. */
  pingIntervalMs?: number;
  /** Full-jitter backoff: delay uniform in [0, min(max, base * 2^attempt)) (defaults 250 and 10000). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Refresh the token this long before its exp, at most half its remaining life (default 30000). */
  refreshMarginMs?: number;
  /** Refresh from the token function before exp and on token_expired (default true); 4011 reconnects either way. */
  autoRefresh?: boolean;
  /** Message ids remembered to drop duplicates (default 2048). */
  dedupeSize?: number;
  /** Requests that may wait for a (re)connection (default 1000). */
  maxQueued?: number;
}

export type State = "disconnected" | "connecting" | "connected" | "reconnecting" | "closed";

export interface AuthInfo {
  user: string;
  conn: string;
  instance: string;
  /** The token's exp in UNIX seconds, 0 when it has none. */
  exp: number;
}

/** A delivered message (PROTOCOL.md section 4). */
export interface Message {
  type: "message";
  room?: string;
  channel?: string;
  to?: string;
  from?: string;
  data: Data;
  /** Gateway message id, unique across instances. */
  id: string;
  /** History sequence (history mode, rooms only). */
  seq?: number;
  ts: number;
}

export interface RequestOptions {
  timeoutMs?: number;
}

export interface PublishOptions extends RequestOptions {
  priority?: "high" | "normal" | "low";
  filter?: Record<string, string> | { tag: string; in: string[] };
}

export interface Reply {
  type: string;
  id: string;
  [key: string]: unknown;
}

export interface EventMap {
  state: [state: State, previous: State];
  connecting: [info: { attempt: number }];
  connected: [info: AuthInfo & { reconnected: boolean }];
  disconnected: [info: { code: number; reason: string }];
  reconnecting: [info: { delay: number; code: number; attempt: number; hinted: boolean }];
  /** The gateway is draining: the next attempt waits afterMs. */
  reconnect: [info: { afterMs: number }];
  message: [message: Message];
  "user:joined": [event: { room: string; user: string }];
  "user:left": [event: { room: string; user: string }];
  presence: [event: { type: "user:joined" | "user:left"; room: string; user: string }];
  gap: [event: { type: "gap"; dropped?: number; reason?: string; room?: string; channel?: string; recovered?: boolean }];
  resumed: [reply: { room: string; seq: number; recovered: boolean }];
  token_expired: [event: { close_in_ms: number }];
  refreshed: [info: { exp: number }];
  /** A membership the gateway ended (reason "revoked" or "server"). */
  left: [event: { room?: string; channel?: string; reason: string }];
  /** A membership the gateway created (connect hook, control API). */
  joined: [event: { room: string; server: true }];
  error: [error: WsgateError];
}

export declare class WsgateError extends Error {
  constructor(code: string, message?: string, extra?: object);
  /** An error reply's code ("forbidden", "unavailable", ...) or the library's: "timeout", "closed", "disconnected", "auth_failed", "token". */
  code: string;
  /** Close code, when a close caused it. */
  closeCode?: number;
  /** service_error's reason (rpc). */
  reason?: string;
  /** The request id it answers. */
  id?: string;
}

export declare class Client {
  constructor(options: ClientOptions);
  readonly state: State;
  readonly user: string;
  readonly conn: string;
  readonly instance: string;
  readonly exp: number;
  readonly lastClose: { code: number; reason: string } | null;
  readonly lastError: WsgateError | null;
  /** Rooms the client is in (re-joined after reconnects) and the last seq seen in each. */
  readonly rooms: ReadonlyMap<string, { seq?: number }>;
  /** Channels the client subscribed (re-subscribed after reconnects). */
  readonly channels: ReadonlySet<string>;

  /** Starts the client; resolves on the first auth:ok, rejects when it stops for good. */
  connect(): Promise<AuthInfo>;
  /** Stops for good (close 1000); pending requests reject with code "closed". */
  close(): void;

  on<K extends keyof EventMap>(event: K, fn: (...args: EventMap[K]) => void): () => void;
  once<K extends keyof EventMap>(event: K, fn: (...args: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(event: K, fn: (...args: EventMap[K]) => void): void;

  join(room: string): Promise<Reply>;
  leave(room: string): Promise<Reply>;
  subscribe(channel: string): Promise<Reply>;
  unsubscribe(channel: string): Promise<Reply>;
  /** Resolves with the id receivers see (mid) and, in history mode, its seq. */
  message(room: string, data: Data, options?: PublishOptions): Promise<{ mid: string; seq?: number }>;
  publish(channel: string, data: Data, options?: PublishOptions): Promise<{ mid: string }>;
  /** Resolves with the id receivers see (mid), and the connections reached here. */
  send(to: string, data: Data, options?: RequestOptions): Promise<{ mid: string; delivered: number; remote: boolean }>;
  presence(room: string, options?: RequestOptions): Promise<string[]>;
  rpc(method: string, data?: Data, options?: RequestOptions): Promise<Data>;
  ping(options?: RequestOptions): Promise<number>;
  /** Sends `refresh` with token, or a fresh one from the token function. */
  refresh(token?: string): Promise<{ exp: number }>;
  /** Replays what a joined room received since the last seq seen (history mode). */
  resume(room: string): Promise<{ room: string; seq: number; recovered: boolean } | null>;
  /** Sends any message with a fresh id and resolves with the reply that carries it. */
  request(message: { type: string; [key: string]: unknown }, options?: RequestOptions): Promise<Reply>;
}

/** new Client(options) plus connect(). */
export declare function connect(options: ClientOptions): Promise<Client>;

/** Whether a close code is in the reconnect class (PROTOCOL.md section 4). */
export declare function shouldReconnect(code: number): boolean;
/** Full-jitter exponential backoff delay for an attempt (0-based). */
export declare function backoffDelay(attempt: number, baseMs: number, maxMs: number, random?: () => number): number;
export declare function msgpackEncode(value: Data): Uint8Array;
export declare function msgpackDecode(bytes: Uint8Array | ArrayBuffer): Data;

/** A bounded set of the last `size` ids. */
export declare class SeenIDs {
  constructor(size: number);
  add(id: string): boolean;
  has(id: string): boolean;
}
