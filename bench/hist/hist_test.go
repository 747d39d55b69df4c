package hist

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func relErr(got, want int64) float64 {
	if want == 0 {
		return math.Abs(float64(got))
	}
	return math.Abs(float64(got-want)) / float64(want)
}

func TestIndexContiguousAndMonotone(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<20; v++ {
		i := index(v)
		if i != prev && i != prev+1 {
			t.Fatalf("index(%d)=%d after %d: not contiguous", v, i, prev)
		}
		lo, w := bucketRange(i)
		if v < lo || v >= lo+w {
			t.Fatalf("value %d not inside bucket %d [%d,%d)", v, i, lo, lo+w)
		}
		prev = i
	}
	if index(MaxValue) != nBuckets-1 {
		t.Fatalf("index(MaxValue)=%d want %d", index(MaxValue), nBuckets-1)
	}
}

func TestQuantilesAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []string{"uniform", "lognormal", "bimodal"} {
		h := New()
		vals := make([]int64, 0, 200000)
		for i := 0; i < 200000; i++ {
			var v int64
			switch dist {
			case "uniform":
				v = r.Int64N(10_000_000)
			case "lognormal":
				v = int64(math.Exp(r.NormFloat64()*1.5 + 13))
			case "bimodal":
				if r.IntN(100) < 97 {
					v = 50_000 + r.Int64N(20_000)
				} else {
					v = 40_000_000 + r.Int64N(10_000_000)
				}
			}
			vals = append(vals, v)
			h.Record(v)
		}
		for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
			want := ExactQuantile(vals, q)
			got := h.Quantile(q)
			if e := relErr(got, want); e > 0.01 {
				t.Errorf("%s q=%v got %d want %d (err %.4f)", dist, q, got, want, e)
			}
		}
		if h.Quantile(1) != ExactQuantile(vals, 1) || h.Max() != ExactQuantile(vals, 1) {
			t.Errorf("%s max mismatch", dist)
		}
		if h.Quantile(0) != vals[0] {
			t.Errorf("%s min mismatch", dist)
		}
		var sum float64
		for _, v := range vals {
			sum += float64(v)
		}
		if math.Abs(h.Mean()-sum/float64(len(vals))) > 1e-6*sum/float64(len(vals)) {
			t.Errorf("%s mean mismatch", dist)
		}
	}
}

func TestSmallValuesExact(t *testing.T) {
	h := New()
	for v := int64(0); v < 200; v++ {
		h.Record(v)
	}
	for v := int64(1); v <= 200; v++ {
		q := float64(v) / 200
		if got := h.Quantile(q); got != v-1 {
			t.Fatalf("q=%v got %d want %d", q, got, v-1)
		}
	}
}

func TestMergeEqualsCombined(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b, all := New(), New(), New()
	for i := 0; i < 50000; i++ {
		v := int64(math.Exp(r.NormFloat64()*2 + 10))
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	m := New()
	m.Merge(a)
	m.Merge(b)
	if *m != *all {
		// compare field by field for a useful message
		if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() {
			t.Fatalf("merge header mismatch: %v vs %v", m.Summarize(), all.Summarize())
		}
		if math.Abs(m.sum-all.sum) > 1e-9*all.sum {
			t.Fatalf("merge sum mismatch")
		}
		if m.counts != all.counts {
			t.Fatalf("merge counts mismatch")
		}
	}
	// Merge through the JSON snapshot form, as workers do.
	var a2, b2 Histogram
	for _, p := range []struct {
		src *Histogram
		dst *Histogram
	}{{a, &a2}, {b, &b2}} {
		js, err := json.Marshal(p.src)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, p.dst); err != nil {
			t.Fatal(err)
		}
	}
	m2 := New()
	m2.Merge(&a2)
	m2.Merge(&b2)
	if m2.counts != all.counts || m2.Summarize() != all.Summarize() {
		t.Fatalf("snapshot merge mismatch: %+v vs %+v", m2.Summarize(), all.Summarize())
	}
}

func TestZeroValueAndEmpty(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Min() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(1234)
	if h.Min() != 1234 || h.Max() != 1234 || h.Quantile(0.5) < 1230 || h.Quantile(0.5) > 1240 {
		t.Fatalf("zero-value use broken: %+v", h.Summarize())
	}
	var e Histogram
	e.Merge(New())
	m := New()
	m.Merge(&h)
	if m.Min() != 1234 {
		t.Fatalf("merge into empty min=%d", m.Min())
	}
}

func TestSnapshotRejectsCorrupt(t *testing.T) {
	if _, err := FromSnapshot(&Snapshot{Precision: P, Count: 2, Buckets: []uint64{1, 1}}); err == nil {
		t.Fatal("expected count mismatch error")
	}
	if _, err := FromSnapshot(&Snapshot{Precision: P + 1}); err == nil {
		t.Fatal("expected precision error")
	}
	if _, err := FromSnapshot(&Snapshot{Precision: P, Count: 1, Buckets: []uint64{nBuckets, 1}}); err == nil {
		t.Fatal("expected range error")
	}
}

func TestClampHuge(t *testing.T) {
	h := New()
	h.Record(math.MaxInt64)
	h.Record(-5)
	if h.Max() != math.MaxInt64 || h.Min() != 0 || h.Count() != 2 {
		t.Fatalf("clamp: %+v", h.Summarize())
	}
}
