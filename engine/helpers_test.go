package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// startEngine runs an engine on 127.0.0.1:0 with opts and h for one test.
func startEngine(t testing.TB, opts Options, h Handler) *Engine {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Loops == 0 {
		opts.Loops = 2
	}
	e, err := New(opts, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := e.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e
}

// wsURL is the engine's WebSocket URL.
func wsURL(e *Engine) string { return "ws://" + e.Addr() + e.opts.WSPath }

// checkFor polls f until it returns nil or d passes.
func checkFor(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v: %v", d, err)
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
