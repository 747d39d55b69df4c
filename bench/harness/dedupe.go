package harness

// seqSet remembers which sequence numbers one receiving connection has seen,
// so that a message delivered twice counts once (and is counted as a
// duplicate) and losses are expected minus unique deliveries. Every stamp
// carries seq = worker<<48 | loop<<40 | i, where i counts up per sending
// loop: the set keeps one bitmap per sending loop ("stream"), starting at the
// first i seen (rounded down to 64) and growing in either direction, so its
// size is the span of i seen by this connection, not the whole run.
type seqSet struct {
	streams []seqStream
}

type seqStream struct {
	id   uint64 // seq >> streamShift
	base uint64 // first i the bitmap covers (multiple of 64)
	bits []uint64
}

const streamShift = 40

// add records seq and reports whether it was new.
func (s *seqSet) add(seq uint64) bool {
	id, i := seq>>streamShift, seq&(1<<streamShift-1)
	var st *seqStream
	for k := range s.streams {
		if s.streams[k].id == id {
			st = &s.streams[k]
			break
		}
	}
	if st == nil {
		s.streams = append(s.streams, seqStream{id: id, base: i &^ 63})
		st = &s.streams[len(s.streams)-1]
	}
	if i < st.base {
		// an older message after a newer one: grow the bitmap downwards
		nb := i &^ 63
		grown := make([]uint64, int((st.base-nb)/64)+len(st.bits))
		copy(grown[(st.base-nb)/64:], st.bits)
		st.bits, st.base = grown, nb
	}
	w := int((i - st.base) / 64)
	if w >= len(st.bits) {
		n := max(w+1, 2*len(st.bits))
		grown := make([]uint64, n)
		copy(grown, st.bits)
		st.bits = grown
	}
	bit := uint64(1) << ((i - st.base) % 64)
	if st.bits[w]&bit != 0 {
		return false
	}
	st.bits[w] |= bit
	return true
}

// reset forgets every seq.
func (s *seqSet) reset() { s.streams = nil }
