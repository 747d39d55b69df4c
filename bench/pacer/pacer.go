// Package pacer computes intended send times for an open-loop load generator.
// Message i (0-based) is intended at Start + i/Rate; senders send every
// message whose intended time has passed and measure latency from that
// intended time, so a stalled sender or server cannot hide queueing delay
// (no coordinated omission).
package pacer

import "math"

// Pacer is immutable; a sender keeps its own "next index" counter.
type Pacer struct {
	StartNs int64   // intended time of message 0 (unix ns)
	Rate    float64 // messages per second, > 0
	Total   int64   // number of messages; <= 0 means unbounded
}

// New builds a pacer for rate msgs/s over durNs nanoseconds starting at startNs.
func New(startNs int64, rate float64, durNs int64) Pacer {
	if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
		rate = 0 // never due
	}
	p := Pacer{StartNs: startNs, Rate: rate}
	if rate > 0 && durNs > 0 {
		p.Total = int64(math.Ceil(rate*float64(durNs)/1e9 - 1e-9))
	}
	return p
}

// Intended returns the intended send time of message i.
func (p Pacer) Intended(i int64) int64 {
	return p.StartNs + int64(math.Round(float64(i)*1e9/p.Rate))
}

// Due returns how many messages (indices 0..Due-1) have an intended time <= nowNs,
// capped at Total.
func (p Pacer) Due(nowNs int64) int64 {
	if p.Rate <= 0 || nowNs < p.StartNs {
		return 0
	}
	n := int64(float64(nowNs-p.StartNs)*p.Rate/1e9) + 1
	// correct float rounding at boundaries
	for n > 0 && p.Intended(n-1) > nowNs {
		n--
	}
	for p.Intended(n) <= nowNs && (p.Total <= 0 || n < p.Total) {
		n++
	}
	if p.Total > 0 && n > p.Total {
		n = p.Total
	}
	return n
}

// Done reports whether all messages are due.
func (p Pacer) Done(sent int64) bool { return p.Total > 0 && sent >= p.Total }

// EndNs is the intended time just after the last message (Start + Total/Rate).
func (p Pacer) EndNs() int64 { return p.Intended(p.Total) }
