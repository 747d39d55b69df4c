// Package browsertest runs a real headless Chromium from Go tests, so that a
// test can have a page's own `new WebSocket(...)` talk to a server under test.
//
// Typical use:
//
//	b := browsertest.New(t) // skips the test when no Chromium is installed
//	got, err := b.Run(ctx, srv.URL+"/page", `window.result`, 10*time.Second)
//
// For tests that need several pages at once (a two-tab chat, for example) use
// [Browser.NewTab] and the [Tab] methods.
//
// New skips the test with a clear message when no browser is found; set
// BROWSERTEST_REQUIRE=1 (CI) to make that a failure instead. Install the
// browser with scripts/install-deps.sh.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// SkipMessage is the message New skips with when no browser is installed.
const SkipMessage = "browsertest: no Chromium installed (run scripts/install-deps.sh)"

// startTimeout bounds how long New waits for the browser to come up.
const startTimeout = 60 * time.Second

// pollInterval is how often Wait re-evaluates its expression.
const pollInterval = 25 * time.Millisecond

// Find returns the path of a Chromium/Chrome executable, or "" when none is
// installed. It checks $CHROMIUM_PATH, /usr/bin/chromium, and then chromium,
// chromium-browser, google-chrome and google-chrome-stable on $PATH.
func Find() string {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" && isExecutable(p) {
		return p
	}
	if isExecutable(debianChromium) {
		return debianChromium
	}
	for _, name := range pathNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Where Find looks after $CHROMIUM_PATH (variables so tests can hide them).
var (
	debianChromium = "/usr/bin/chromium"
	pathNames      = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
)

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// Flags returns the Chromium command-line flags New launches with (besides
// the ones chromedp always sets and --user-data-dir). They are the ones known
// to work as root in a container with no outside network: without the
// background-networking/component-update/sync flags Chromium keeps trying to
// reach Google and some of its connections are refused.
func Flags() []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync",
	}
}

// Browser is one headless Chromium process owned by a test.
type Browser struct {
	t       testing.TB
	path    string
	ctx     context.Context // browser context (first tab); lives until cleanup
	mu      sync.Mutex
	tabs    []*Tab
	closing bool
}

// New starts a headless Chromium for the test and stops it with t.Cleanup.
// When no browser is installed it calls t.Skip with [SkipMessage] (or
// t.Fatal when BROWSERTEST_REQUIRE=1 is set in the environment).
func New(t testing.TB) *Browser {
	t.Helper()
	path := Find()
	if path == "" {
		msg := SkipMessage
		if p := os.Getenv("CHROMIUM_PATH"); p != "" {
			msg += fmt.Sprintf("; CHROMIUM_PATH=%q is not an executable file", p)
		}
		if os.Getenv("BROWSERTEST_REQUIRE") == "1" {
			t.Fatal(msg + " (BROWSERTEST_REQUIRE=1)")
		}
		t.Skip(msg)
	}

	// TempDir first: cleanups run last-in first-out, so the browser is
	// stopped (and has exited) before its profile directory is removed.
	dataDir := t.TempDir()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dataDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(func(format string, args ...any) {
		t.Logf("browsertest: "+format, args...)
	}))

	b := &Browser{t: t, path: path, ctx: ctx}
	t.Cleanup(func() {
		b.mu.Lock()
		b.closing = true
		b.mu.Unlock()
		cancel()      // closes the browser and waits for it
		allocCancel() // stops the process if it is still running
	})

	// The first Run starts the browser. It must not get a timeout context
	// (that would tie the browser's life to the timeout), so bound it from
	// outside instead.
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("browsertest: starting %s: %v", path, err)
		}
	case <-time.After(startTimeout):
		cancel()
		<-done
		t.Fatalf("browsertest: %s did not start within %v", path, startTimeout)
	}
	return b
}

// Path returns the executable that the browser runs.
func (b *Browser) Path() string { return b.path }

// Run opens a new tab, navigates it to url, and polls the JavaScript
// expression waitJS until it yields a non-empty string, which it returns. The
// tab is closed before Run returns. See [Tab.Wait] for how waitJS is
// evaluated. timeout bounds the whole call (navigation included); ctx can end
// it earlier.
func (b *Browser) Run(ctx context.Context, url string, waitJS string, timeout time.Duration) (result string, err error) {
	tab, err := b.NewTab()
	if err != nil {
		return "", err
	}
	defer tab.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tab.Navigate(ctx, url); err != nil {
		return "", err
	}
	return tab.Wait(ctx, waitJS, timeout)
}

// Tab is one page of the browser. A Tab is not safe for concurrent use;
// different tabs may be used from different goroutines.
type Tab struct {
	b      *Browser
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	console []string
}

// NewTab opens a new, blank tab. It is closed by Close or when the test ends.
func (b *Browser) NewTab() (*Tab, error) {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil, errors.New("browsertest: browser is closed")
	}
	b.mu.Unlock()

	tab := &Tab{b: b}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewWindow(false), chromedp.WithListener(tab.listen))
	tab.ctx, tab.cancel = ctx, cancel
	// First Run on the tab context: creates the target; no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("browsertest: opening tab: %w", err)
	}
	b.mu.Lock()
	b.tabs = append(b.tabs, tab)
	b.mu.Unlock()
	return tab, nil
}

// listen records the page's console output and uncaught exceptions, so
// errors can say what the page complained about.
func (tb *Tab) listen(ev any) {
	line, ok := consoleLine(ev)
	if !ok {
		return
	}
	tb.mu.Lock()
	if len(tb.console) < 200 {
		tb.console = append(tb.console, line)
	}
	tb.mu.Unlock()
}

// consoleLine formats a console call or an uncaught exception.
func consoleLine(ev any) (string, bool) {
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			parts = append(parts, remoteString(a))
		}
		return string(e.Type) + ": " + strings.Join(parts, " "), true
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		if d == nil {
			return "exception", true
		}
		text := d.Text
		if d.Exception != nil {
			desc, _, _ := strings.Cut(remoteString(d.Exception), "\n    at ")
			text += " " + desc
		}
		return fmt.Sprintf("exception: %s (%s:%d)", strings.TrimSpace(text), d.URL, d.LineNumber+1), true
	}
	return "", false
}

func remoteString(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if len(o.Value) > 0 {
		var s string
		if json.Unmarshal(o.Value, &s) == nil {
			return s
		}
		return string(o.Value)
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	if o.Description != "" {
		return o.Description
	}
	return string(o.Type)
}

// Console returns the console messages and uncaught exceptions the page has
// logged so far (at most 200).
func (tb *Tab) Console() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// Close closes the tab. It is safe to call more than once.
func (tb *Tab) Close() { tb.cancel() }

// run runs the action on the tab, bounded by ctx (which need not derive
// from the tab's context).
func (tb *Tab) run(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	rctx, cancel := context.WithCancel(tb.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	err := chromedp.Do(rctx, steps...)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Navigate loads url in the tab and waits for the load event.
func (tb *Tab) Navigate(ctx context.Context, url string) error {
	if err := tb.run(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("browsertest: navigate %s: %w%s", url, err, tb.consoleSuffix())
	}
	return nil
}

// Eval evaluates the JavaScript expression once in the page (awaiting it if
// it is a promise) and decodes its JSON value into out (out may be nil to
// ignore the value). A thrown exception is returned as an error.
func (tb *Tab) Eval(ctx context.Context, expr string, out any) error {
	var raw []byte
	err := tb.run(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var err error
		raw, err = chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise)(ctx, t)
		return err
	}))
	if err != nil {
		return fmt.Errorf("browsertest: eval %q: %w%s", short(expr), err, tb.consoleSuffix())
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("browsertest: eval %q: decoding %s: %w", short(expr), short(string(raw)), err)
	}
	return nil
}

// Wait polls the JavaScript expression waitJS until it yields a non-empty
// string and returns that string. The expression may yield a promise. Any
// other value (undefined, null, "", a number, an object) counts as "not
// yet", and so does an exception; use JSON.stringify(...) to return
// structured data. On timeout the error includes the last exception and the
// page's console output.
func (tb *Tab) Wait(ctx context.Context, waitJS string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wrapped := "(async () => { try { const v = await (" + waitJS + "\n); " +
		"return typeof v === 'string' ? {v: v} : {v: ''}; } " +
		"catch (e) { return {e: String(e && e.stack || e)}; } })()"
	var lastErr string
	for {
		var r struct {
			V string `json:"v"`
			E string `json:"e"`
		}
		err := tb.Eval(ctx, wrapped, &r)
		switch {
		case err == nil && r.V != "":
			return r.V, nil
		case err == nil && r.E != "":
			lastErr = r.E
		case err != nil && ctx.Err() == nil:
			// The page may be mid-navigation; keep polling.
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("browsertest: %q gave no non-empty string within %v", short(waitJS), timeout)
			if lastErr != "" {
				msg += "; last error: " + lastErr
			}
			return "", fmt.Errorf("%s: %w%s", msg, ctx.Err(), tb.consoleSuffix())
		case <-time.After(pollInterval):
		}
	}
}

func (tb *Tab) consoleSuffix() string {
	c := tb.Console()
	if len(c) == 0 {
		return ""
	}
	if len(c) > 20 {
		c = c[len(c)-20:]
	}
	return "\npage console:\n  " + strings.Join(c, "\n  ")
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}
