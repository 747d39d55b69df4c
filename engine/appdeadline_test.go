package engine

import (
	"testing"
	"time"
)

// tickAt never names a tick before at, and caps deadlines beyond the range
// in which wrapping tick numbers still compare (a token valid for years
// must not read as already due).
func TestTickAt(t *testing.T) {
	e := &Engine{opts: Options{TickInterval: time.Millisecond}, start: time.Now().Add(-time.Hour)}
	now := e.tickNow()
	if got := e.tickAt(e.start.Add(-time.Second)); got != now && got != now+1 {
		t.Fatalf("past deadline: tick %d, want about now %d", got, now)
	}
	at := e.start.Add(time.Hour + 1500*time.Microsecond)
	got := e.tickAt(at)
	if begin := e.start.Add(time.Duration(got) * time.Millisecond); begin.Before(at) || begin.Sub(at) >= time.Millisecond {
		t.Fatalf("tick %d begins at %v, want the first tick not before %v", got, begin, at)
	}
	far := e.tickAt(time.Now().Add(10 * 365 * 24 * time.Hour))
	if d := far - e.tickNow(); int32(d) <= 0 || d > maxAppDeadlineTicks {
		t.Fatalf("10 years ahead: %d ticks from now, want 1..%d", d, maxAppDeadlineTicks)
	}
}
