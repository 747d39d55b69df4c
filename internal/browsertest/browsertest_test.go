package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// page opens a WebSocket back to the server it came from, sends one text and
// one binary message and publishes what came back in window.result (as JSON),
// or "error: ..." when something went wrong.
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>browsertest echo</title></head>
<body><script>
window.result = "";
(function () {
  const got = {text: null, binary: null, closed: false};
  const ws = new WebSocket("ws://" + location.host + "/ws");
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send("héllo, wsgate ✓");
    ws.send(new Uint8Array([0, 1, 2, 127, 128, 255]));
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      got.text = ev.data;
    } else {
      got.binary = Array.from(new Uint8Array(ev.data));
    }
    if (got.text !== null && got.binary !== null) {
      window.result = JSON.stringify(got);
      ws.close(1000, "done");
    }
  };
  ws.onerror = () => { window.result = window.result || "error: websocket error"; };
  ws.onclose = (ev) => {
    if (!window.result) window.result = "error: closed early code=" + ev.code;
  };
})();
</script></body></html>`

// echoServer serves page at / and a gorilla/websocket echo endpoint at /ws,
// on 127.0.0.1.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}

type echoResult struct {
	Text   string `json:"text"`
	Binary []int  `json:"binary"`
}

func checkEcho(t *testing.T, raw string) {
	t.Helper()
	if strings.HasPrefix(raw, "error:") {
		t.Fatalf("page reported %s", raw)
	}
	var r echoResult
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("page result %q: %v", raw, err)
	}
	if r.Text != "héllo, wsgate ✓" {
		t.Errorf("text echo = %q", r.Text)
	}
	want := []int{0, 1, 2, 127, 128, 255}
	if len(r.Binary) != len(want) {
		t.Fatalf("binary echo = %v, want %v", r.Binary, want)
	}
	for i := range want {
		if r.Binary[i] != want[i] {
			t.Fatalf("binary echo = %v, want %v", r.Binary, want)
		}
	}
}

func TestFindHonoursChromiumPath(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "my-chromium")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHROMIUM_PATH", fake)
	if got := Find(); got != fake {
		t.Fatalf("Find() = %q, want %q", got, fake)
	}
	// A CHROMIUM_PATH that is not an executable is ignored.
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHROMIUM_PATH", notExec)
	if got := Find(); got == notExec {
		t.Fatalf("Find() returned non-executable %q", got)
	}
}

// skipTB records the Skip/Fatal of New without ending the real test.
type skipTB struct {
	testing.TB
	msg   string
	fatal bool
}

func (s *skipTB) Helper() {}
func (s *skipTB) Skip(args ...any) {
	s.msg = strings.TrimSuffix(fmt.Sprintln(args...), "\n")
	runtime.Goexit()
}
func (s *skipTB) Fatal(args ...any) {
	s.fatal = true
	s.Skip(args...)
}

func TestNewSkipsWithoutBrowser(t *testing.T) {
	old := debianChromium
	debianChromium = filepath.Join(t.TempDir(), "no-such-chromium")
	t.Cleanup(func() { debianChromium = old })
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CHROMIUM_PATH", "")

	run := func() *skipTB {
		s := &skipTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			New(s)
			t.Error("New returned without a browser")
		}()
		<-done
		return s
	}

	t.Setenv("BROWSERTEST_REQUIRE", "")
	if s := run(); s.fatal || s.msg != SkipMessage {
		t.Errorf("New skipped with %q (fatal=%v), want skip %q", s.msg, s.fatal, SkipMessage)
	}
	t.Setenv("BROWSERTEST_REQUIRE", "1")
	if s := run(); !s.fatal || !strings.HasPrefix(s.msg, SkipMessage) {
		t.Errorf("with BROWSERTEST_REQUIRE=1 New gave %q (fatal=%v), want a fatal error", s.msg, s.fatal)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := echoServer(t)
	b := New(t)
	t.Logf("browser: %s", b.Path())
	ctx := context.Background()
	raw, err := b.Run(ctx, srv.URL+"/", `window.result`, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, raw)
}

func TestTwoTabs(t *testing.T) {
	srv := echoServer(t)
	b := New(t)
	ctx := context.Background()
	tabs := make([]*Tab, 2)
	for i := range tabs {
		tab, err := b.NewTab()
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		if err := tab.Navigate(ctx, srv.URL+"/"); err != nil {
			t.Fatal(err)
		}
		tabs[i] = tab
	}
	for i, tab := range tabs {
		raw, err := tab.Wait(ctx, `window.result`, 20*time.Second)
		if err != nil {
			t.Fatalf("tab %d: %v", i, err)
		}
		checkEcho(t, raw)
	}
	// Eval: set state in one tab, check the other does not see it.
	if err := tabs[0].Eval(ctx, `window.marker = "tab0"`, nil); err != nil {
		t.Fatal(err)
	}
	var m0, m1 string
	if err := tabs[0].Eval(ctx, `window.marker || ""`, &m0); err != nil {
		t.Fatal(err)
	}
	if err := tabs[1].Eval(ctx, `window.marker || ""`, &m1); err != nil {
		t.Fatal(err)
	}
	if m0 != "tab0" || m1 != "" {
		t.Fatalf("markers = %q, %q; want tab0 and empty", m0, m1)
	}
	var n int
	if err := tabs[1].Eval(ctx, `Promise.resolve(6*7)`, &n); err != nil || n != 42 {
		t.Fatalf("Eval promise = %d, %v", n, err)
	}
}

func TestWaitTimeoutReportsConsole(t *testing.T) {
	srv := echoServer(t)
	b := New(t)
	ctx := context.Background()
	tab, err := b.NewTab()
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if err := tab.Navigate(ctx, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if err := tab.Eval(ctx, `console.log("marker-from-page", 7)`, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tab.Wait(ctx, `window.neverSet`, 500*time.Millisecond)
	if err == nil {
		t.Fatal("Wait on an unset value returned no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Wait took %v for a 500ms timeout", d)
	}
	if !strings.Contains(err.Error(), "marker-from-page 7") {
		t.Errorf("timeout error does not carry the page console: %v", err)
	}
	// An exception in the page is an error of Eval.
	if err := tab.Eval(ctx, `(() => { throw new Error("boom") })()`, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Eval of a throwing expression: %v", err)
	}
}
