// Command uws is the uWebSockets peer of wsbench: uWebSockets.js (the
// uWebSockets C++ server with its Node.js binding, one event loop) set up the
// way its authors' examples set it up for the load.
//
//	node server.mjs -addr 127.0.0.1:9003 -mode echo|broadcast
//
// echo: every message is sent back unchanged (ws.send).
// broadcast: every connection subscribes to topic "bench" and every message
// is published with ws.publish, which reaches every OTHER subscriber (the
// publisher is skipped, as in the gateway's -broadcast mode). uWS batches
// what one loop iteration publishes into one write per subscriber (its
// topic tree drains once per iteration), so this is its native fan-out.
//
// Settings, the rest at uWS's defaults: compression off (as for every target),
// maxPayloadLength 16 MiB, idleTimeout 0 (the load client does not ping,
// like the other peers, which do not time idle connections out), and
// maxBackpressure 1 MiB with closeOnBackpressureLimit false: uWS's default
// 64 KiB silently skips a subscriber that is behind, which would count as
// losses rather than as latency; 1 MiB is what the gateway holds per
// receiver before it tells the client (-max-queue-bytes).
import { App, DISABLED } from 'uws-pack';

function arg(name, def) {
  const i = process.argv.indexOf('-' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const addr = arg('addr', '127.0.0.1:9003');
const mode = arg('mode', 'echo');
const sep = addr.lastIndexOf(':');
const host = addr.slice(0, sep);
const port = Number(addr.slice(sep + 1));
if (mode !== 'echo' && mode !== 'broadcast') {
  console.error(`uws: -mode ${mode}: want echo or broadcast`);
  process.exit(2);
}
const broadcast = mode === 'broadcast';

const app = App().ws('/*', {
  compression: DISABLED,
  maxPayloadLength: 16 << 20,
  idleTimeout: 0,
  maxBackpressure: 1 << 20,
  closeOnBackpressureLimit: false,
  open: (ws) => {
    if (broadcast) ws.subscribe('bench');
  },
  message: broadcast
    ? (ws, message, isBinary) => { ws.publish('bench', message, isBinary); }
    : (ws, message, isBinary) => { ws.send(message, isBinary); },
});

app.listen(host, port, (token) => {
  if (!token) {
    console.error(`uws: cannot listen on ${addr}`);
    process.exit(1);
  }
  console.log(`uws ${mode} listening on ${addr}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
