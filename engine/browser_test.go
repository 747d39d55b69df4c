package engine

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/browsertest"
)

// browserPage is served on loopback; its own WebSocket (Chromium's, not a Go
// client) talks to the engine. It reports "ok ..." or "fail: ..." in
// window.result.
const browserPage = `<!doctype html><meta charset="utf-8"><title>wsgate engine</title>
<script>
window.result = "";
const ws = new WebSocket(new URLSearchParams(location.search).get("ws"));
ws.binaryType = "arraybuffer";
const big = "héllo wörld ".repeat(6000);               // ~78 KB, several frames' worth
const bin = new Uint8Array(70000).map((_, i) => i % 251); // 16-bit and 64-bit length forms
const steps = [
  {send: "hello", check: d => d === "hello"},
  {send: "", check: d => d === ""},
  {send: "emoji 🚀 and ünïcödé", check: d => d === "emoji 🚀 and ünïcödé"},
  {send: big, check: d => d === big},
  {send: bin, check: d => d instanceof ArrayBuffer && d.byteLength === bin.length && new Uint8Array(d).every((v, i) => v === bin[i])},
];
let i = 0;
ws.onopen = () => ws.send(steps[0].send);
ws.onmessage = ev => {
  if (!steps[i].check(ev.data)) { window.result = "fail: step " + i; ws.close(); return; }
  if (++i === steps.length) { window.result = "ok " + (ws.extensions || "none"); ws.close(1000, "done"); return; }
  ws.send(steps[i].send);
};
ws.onerror = () => { if (!window.result) window.result = "fail: websocket error"; };
ws.onclose = ev => { if (!window.result) window.result = "fail: closed " + ev.code; };
</script>`

// TestChromiumWebSocket drives headless Chromium's own WebSocket against the
// echo engine, with and without permessage-deflate. It skips, saying why,
// when no Chromium is installed (scripts/install-deps.sh installs it).
func TestChromiumWebSocket(t *testing.T) {
	b := browsertest.New(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	}))
	defer page.Close()
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			e := startEngine(t, Options{Compress: compress, MaxMessageSize: 1 << 20}, EchoHandler{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := b.Run(ctx, page.URL+"/?ws="+wsURL(e), `window.result`, 20*time.Second)
			if err != nil {
				t.Fatalf("browser: %v", err)
			}
			want := "ok none"
			if compress {
				want = "ok permessage-deflate"
			}
			if len(got) < len(want) || got[:len(want)] != want {
				t.Fatalf("page reported %q, want %q...", got, want)
			}
		})
	}
}
