package pacer

import (
	"math"
	"testing"
)

func TestIntendedTimes(t *testing.T) {
	p := New(1_000_000_000, 20000, 1_000_000_000)
	if p.Total != 20000 {
		t.Fatalf("total %d", p.Total)
	}
	for i := int64(0); i < p.Total; i++ {
		want := int64(1_000_000_000) + i*50_000
		if got := p.Intended(i); got != want {
			t.Fatalf("intended(%d)=%d want %d", i, got, want)
		}
	}
	if p.EndNs() != 2_000_000_000 {
		t.Fatalf("end %d", p.EndNs())
	}
}

func TestDue(t *testing.T) {
	p := New(1000, 3, 10_000_000_000) // 3/s, non-integer period
	if p.Due(999) != 0 {
		t.Fatal("due before start")
	}
	if p.Due(1000) != 1 {
		t.Fatalf("due at start = %d", p.Due(1000))
	}
	for _, now := range []int64{1000, 1001, 333_334_333, 333_334_334, 666_667_666, 666_667_667, 5_000_000_000, 9_999_999_000} {
		d := p.Due(now)
		// oracle: count i with Intended(i) <= now
		var n int64
		for n < p.Total && p.Intended(n) <= now {
			n++
		}
		if d != n {
			t.Fatalf("Due(%d)=%d want %d", now, d, n)
		}
	}
	if p.Due(1<<62) != p.Total || p.Total != 30 {
		t.Fatalf("cap: %d total %d", p.Due(1<<62), p.Total)
	}
	if !p.Done(30) || p.Done(29) {
		t.Fatal("done")
	}
}

func TestDueMonotoneFractional(t *testing.T) {
	p := New(0, 7777.7, 2_000_000_000)
	prev := int64(0)
	for now := int64(0); now < 2_100_000_000; now += 12_345 {
		d := p.Due(now)
		if d < prev {
			t.Fatalf("not monotone at %d", now)
		}
		if d > 0 && p.Intended(d-1) > now {
			t.Fatalf("message %d due before its time", d-1)
		}
		if d < p.Total && p.Intended(d) <= now {
			t.Fatalf("message %d overdue but not counted", d)
		}
		prev = d
	}
	if prev != p.Total {
		t.Fatalf("final %d total %d", prev, p.Total)
	}
}

func TestBadRateNeverDue(t *testing.T) {
	for _, r := range []float64{0, -1, math.Inf(1), math.NaN()} {
		p := New(0, r, 1e9)
		if p.Due(1e12) != 0 {
			t.Fatalf("rate %v: due %d", r, p.Due(1e12))
		}
	}
}
