package auth

import (
	"encoding/binary"
	"runtime"
	"sync"
	"weak"
)

// This file interns Permissions: Verify looks the token's permission claims
// up by a canonical byte encoding (permKey) and hands every token with the
// same claims the same immutable *Permissions. The table holds only weak
// pointers, so it never keeps a value alive: when the last connection using
// one lets go, the garbage collector frees it and its cleanup deletes the
// entry. Nothing has to be released by hand, so no path (close, refresh,
// failed upgrade) can leak an entry or free one still in use.
//
// Verify runs on the engine's event loops (the router's Accept, auth and
// refresh), several at once. The table's mutex is held only over one map
// lookup or one map store, never across decoding, allocation of the value
// or a call out, so a loop waits at most for another loop's map operation
// (or the runtime's cleanup goroutine deleting one entry).
//
// The table is bounded (maxInterned entries): past that, a new set of
// permissions is handed out unshared, exactly as before interning, and the
// table does not grow. Entries whose value died wait for their cleanup,
// which the runtime queues after the collection that freed the value.

// maxInterned bounds the intern table. Each entry costs about 200 bytes
// (key, map slot, weak handle, cleanup record) on top of the Permissions
// themselves; tokens whose permissions are all different (a room pattern
// per user, say) gain nothing from sharing, and past this many entries
// they stop paying for it.
const maxInterned = 1 << 16

// permTable shares Permissions between tokens; see the top of this file.
// Safe for concurrent use.
type permTable struct {
	mu      sync.Mutex
	entries map[string]weak.Pointer[Permissions]
	max     int
}

func newPermTable(max int) *permTable {
	return &permTable{entries: make(map[string]weak.Pointer[Permissions]), max: max}
}

// lookup returns the live Permissions interned under key, or nil.
func (t *permTable) lookup(key []byte) *Permissions {
	t.mu.Lock()
	wp, ok := t.entries[string(key)]
	t.mu.Unlock()
	if !ok {
		return nil
	}
	return wp.Value() // nil once the value is unreachable
}

// intern stores p under key and returns it, or returns the value another
// goroutine interned under key meanwhile. When the table is full, p is
// returned unshared.
func (t *permTable) intern(key []byte, p *Permissions) *Permissions {
	t.mu.Lock()
	if wp, ok := t.entries[string(key)]; ok {
		if live := wp.Value(); live != nil {
			t.mu.Unlock()
			return live
		}
		// A dead entry whose cleanup has not run yet: replaced below; that
		// cleanup then finds another weak pointer and leaves the entry.
	} else if len(t.entries) >= t.max {
		t.mu.Unlock()
		return p
	}
	e := permEntry{key: string(key), ptr: weak.Make(p)}
	t.entries[e.key] = e.ptr
	t.mu.Unlock()
	// e holds no strong reference to p, so p stays collectable.
	runtime.AddCleanup(p, t.forget, e)
	return p
}

// permEntry names one table entry for its cleanup.
type permEntry struct {
	key string
	ptr weak.Pointer[Permissions]
}

// forget deletes e once its value is gone, unless the key was interned
// again since (then the entry holds another weak pointer).
func (t *permTable) forget(e permEntry) {
	t.mu.Lock()
	if t.entries[e.key] == e.ptr {
		delete(t.entries, e.key)
	}
	t.mu.Unlock()
}

// len is the number of entries, live or awaiting their cleanup.
func (t *permTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Canonical key encoding: for each of rooms, pub, sub_channels and rpc a
// byte 0 (absent) or 1 followed by the count and each pattern, length
// first, in token order; then tags the same way with keys sorted, each key
// and value length first. Lengths make it unambiguous for any bytes, so two
// keys are equal exactly when the claims decode to equal Permissions.

func appendKeyString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
