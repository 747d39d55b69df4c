// Package hist is a small HDR-style log-linear histogram for latency values
// (int64, typically nanoseconds). Values below 2^(P+1) are counted exactly;
// above that each power-of-two range is split into 2^P linear sub-buckets,
// so the relative bucket width is at most 2^-P (P=7: 0.78%, and the reported
// bucket midpoint is within 0.4% of any value in the bucket).
//
// Histograms with the same precision merge by adding counts. A Histogram is
// not safe for concurrent use; keep one per goroutine and merge.
package hist

import (
	"encoding/json"
	"errors"
	"math"
	"math/bits"
	"sort"
)

// P is the sub-bucket precision in bits.
const P = 7

const (
	half     = 1 << P       // sub-buckets per power of two above the exact range
	exactTop = 1 << (P + 1) // values < exactTop have their own bucket
	// MaxValue is the largest value tracked exactly by bucket; larger values are clamped
	// into the last bucket (max still records the true value). 2^45 ns is ~9.8 hours.
	maxShift = 45 - (P + 1)
	nBuckets = exactTop + maxShift*half
)

// MaxValue is the largest value with its own bucket.
const MaxValue = int64(1)<<45 - 1

// Histogram counts int64 values in log-linear buckets.
type Histogram struct {
	counts [nBuckets]uint64
	total  uint64
	min    int64
	max    int64
	sum    float64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxInt64} }

// index maps a value to its bucket.
func index(v int64) int {
	if v < exactTop {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	if v > MaxValue {
		v = MaxValue
	}
	shift := bits.Len64(uint64(v)) - (P + 1)
	return (shift+1)*half + int(uint64(v)>>uint(shift)) - half
}

// bucketRange returns the lowest value and the width of bucket i.
func bucketRange(i int) (lo int64, width int64) {
	if i < exactTop {
		return int64(i), 1
	}
	shift := i/half - 1
	sub := i - shift*half // in [half, 2*half)
	return int64(sub) << uint(shift), int64(1) << uint(shift)
}

// Record adds one value.
func (h *Histogram) Record(v int64) { h.RecordN(v, 1) }

// RecordN adds n occurrences of v.
func (h *Histogram) RecordN(v int64, n uint64) {
	if n == 0 {
		return
	}
	if v < 0 {
		v = 0
	}
	if h.total == 0 && h.min == 0 && h.max == 0 {
		h.min = math.MaxInt64 // zero-value Histogram
	}
	h.counts[index(v)] += n
	h.total += n
	h.sum += float64(v) * float64(n)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() int64 {
	if h.total == 0 {
		return 0
	}
	return h.min
}

// Max is the largest recorded value (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact arithmetic mean of recorded values.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q in [0,1]: the representative
// (midpoint, clamped to [min,max]) of the bucket holding the ceil(q*count)-th
// smallest value. Quantile(1) is the exact max, Quantile(0) the exact min.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q*float64(h.total) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		c := h.counts[i]
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			v := lo + (w-1)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

// Merge adds all counts of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.total == 0 {
		return
	}
	if h.total == 0 {
		h.min = math.MaxInt64
		h.max = 0
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
}

// Reset clears the histogram.
func (h *Histogram) Reset() { *h = Histogram{min: math.MaxInt64} }

// Snapshot is the sparse, serialisable form of a Histogram (what workers send
// to the parent). Buckets is a flat list of (index, count) pairs.
type Snapshot struct {
	Precision int      `json:"precision"`
	Count     uint64   `json:"count"`
	Min       int64    `json:"min"`
	Max       int64    `json:"max"`
	Sum       float64  `json:"sum"`
	Buckets   []uint64 `json:"buckets"`
}

// Snapshot returns the sparse form.
func (h *Histogram) Snapshot() *Snapshot {
	s := &Snapshot{Precision: P, Count: h.total, Min: h.Min(), Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c != 0 {
			s.Buckets = append(s.Buckets, uint64(i), c)
		}
	}
	return s
}

// FromSnapshot rebuilds a Histogram.
func FromSnapshot(s *Snapshot) (*Histogram, error) {
	h := New()
	if s == nil {
		return h, nil
	}
	if s.Precision != P {
		return nil, errors.New("hist: precision mismatch")
	}
	if len(s.Buckets)%2 != 0 {
		return nil, errors.New("hist: odd bucket list")
	}
	var total uint64
	for i := 0; i < len(s.Buckets); i += 2 {
		idx := s.Buckets[i]
		if idx >= nBuckets {
			return nil, errors.New("hist: bucket index out of range")
		}
		h.counts[idx] += s.Buckets[i+1]
		total += s.Buckets[i+1]
	}
	if total != s.Count {
		return nil, errors.New("hist: bucket counts do not add up to count")
	}
	h.total = total
	if total > 0 {
		h.min, h.max = s.Min, s.Max
	}
	h.sum = s.Sum
	return h, nil
}

// MarshalJSON encodes the histogram as its Snapshot.
func (h *Histogram) MarshalJSON() ([]byte, error) { return json.Marshal(h.Snapshot()) }

// UnmarshalJSON decodes a Snapshot.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	n, err := FromSnapshot(&s)
	if err != nil {
		return err
	}
	*h = *n
	return nil
}

// Summary holds the usual percentiles, in the histogram's unit.
type Summary struct {
	Count uint64  `json:"count"`
	Min   int64   `json:"min"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
}

// Summarize computes a Summary.
func (h *Histogram) Summarize() Summary {
	return Summary{Count: h.total, Min: h.Min(), Mean: h.Mean(), P50: h.Quantile(0.5),
		P90: h.Quantile(0.9), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.max}
}

// ExactQuantile is the oracle used by tests: the ceil(q*n)-th smallest of vals
// (vals is sorted in place).
func ExactQuantile(vals []int64, q float64) int64 {
	if len(vals) == 0 {
		return 0
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	if q <= 0 {
		return vals[0]
	}
	rank := int(math.Ceil(q*float64(len(vals)) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	if rank > len(vals) {
		rank = len(vals)
	}
	return vals[rank-1]
}
