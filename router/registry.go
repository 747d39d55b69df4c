package router

import (
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"
)

// interest records, for one address (a room, user or channel), which event
// loops of this instance have local receivers and how many. The delivery
// path only loads the loop mask (an atomic), so fan-out takes no lock on
// the interest; join, leave, auth and close update counts under the
// address's own mutex, never a global one.
type interest struct {
	mask atomic.Uint64 // bit i set: loop i has receivers (loops >= 64 share bit 63)

	mu      sync.Mutex // guards the fields below
	total   int32
	dead    bool           // removed from the registry; re-create on next add
	perLoop []int32        // receivers per loop; aliases few with up to two loops
	users   map[string]int // rooms only: user -> local connections in the room (presence)
	few     [2]int32       // fits in the 64-byte size class: no second allocation for perLoop
}

func newInterest(loops int) *interest {
	in := &interest{}
	if loops <= len(in.few) {
		in.perLoop = in.few[:loops]
	} else {
		in.perLoop = make([]int32, loops)
	}
	return in
}

// registry maps addresses to interest, one table per Kind.
type registry struct {
	loops  int
	tables [3]addrTable // KindRoom, KindUser, KindChannel
}

// addrTable is a map from address name to interest, split into
// addrShards maps by a hash of the name, each under its own lock: a lookup
// takes one shard's read lock, and no lock is global. It replaces a
// sync.Map, whose entries cost ~120 bytes each (trie nodes, the key boxed
// in an interface) against ~40 here: one entry per online user
// (docs/architecture.md "What a connection costs").
//
// Lock order: an interest's mu before a shard's mu (remove deletes while
// holding the interest); nothing takes an interest's mu under a shard lock.
type addrTable struct {
	seed   maphash.Seed
	init   sync.Once
	shards [addrShards]addrShard
}

const addrShards = 64

type addrShard struct {
	mu sync.RWMutex
	m  map[string]*interest
	_  [64 - 24 - 8]byte // one cache line per shard: loops on other cores do not share it
}

func (t *addrTable) shard(name []byte) *addrShard {
	t.init.Do(func() { t.seed = maphash.MakeSeed() })
	return &t.shards[maphash.Bytes(t.seed, name)%addrShards]
}

func (t *addrTable) shardString(name string) *addrShard {
	t.init.Do(func() { t.seed = maphash.MakeSeed() })
	return &t.shards[maphash.String(t.seed, name)%addrShards]
}

// load returns the interest of name, or nil, without allocating.
func (t *addrTable) load(name []byte) *interest {
	sh := t.shard(name)
	sh.mu.RLock()
	in := sh.m[string(name)]
	sh.mu.RUnlock()
	return in
}

func (t *addrTable) loadString(name string) *interest {
	sh := t.shardString(name)
	sh.mu.RLock()
	in := sh.m[name]
	sh.mu.RUnlock()
	return in
}

// loadOrCreate returns the interest of name, creating it with loops
// counters when there is none.
func (t *addrTable) loadOrCreate(name string, loops int) *interest {
	sh := t.shardString(name)
	sh.mu.RLock()
	in := sh.m[name]
	sh.mu.RUnlock()
	if in != nil {
		return in
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if in = sh.m[name]; in == nil {
		if sh.m == nil {
			sh.m = map[string]*interest{}
		}
		in = newInterest(loops)
		sh.m[name] = in
	}
	return in
}

// delete removes name if it still maps to in.
func (t *addrTable) delete(name string, in *interest) {
	sh := t.shardString(name)
	sh.mu.Lock()
	if sh.m[name] == in {
		delete(sh.m, name)
	}
	sh.mu.Unlock()
}

// snapshot lists the table's entries, for walks that lock interests.
func (t *addrTable) snapshot() (names []string, ins []*interest) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for name, in := range sh.m {
			names = append(names, name)
			ins = append(ins, in)
		}
		sh.mu.RUnlock()
	}
	return names, ins
}

func loopBit(i int) uint64 {
	if i >= 63 {
		return 1 << 63
	}
	return 1 << uint(i)
}

// lookup returns the interest of name, or nil. It does not allocate for the
// string conversion.
func (r *registry) lookup(kind Kind, name []byte) *interest {
	return r.tables[kind].load(name)
}

// add counts one more receiver of name on loop; it returns whether this
// instance had none before (the backplane's interest turns on) and, for
// rooms, whether user had no connection in the room before (presence event).
func (r *registry) add(kind Kind, name string, loop int, user string) (firstHere, firstOfUser bool) {
	for {
		in := r.tables[kind].loadOrCreate(name, r.loops)
		in.mu.Lock()
		if in.dead {
			in.mu.Unlock()
			continue
		}
		firstHere = in.total == 0
		in.total++
		in.perLoop[loop]++
		if in.perLoop[loop] == 1 {
			in.mask.Store(in.mask.Load() | loopBit(loop))
		}
		if kind == KindRoom {
			if in.users == nil {
				in.users = map[string]int{}
			}
			in.users[user]++
			firstOfUser = in.users[user] == 1
		}
		in.mu.Unlock()
		return firstHere, firstOfUser
	}
}

// remove undoes add; it reports whether this instance has no receivers of
// name left and, for rooms, whether user left the room entirely.
func (r *registry) remove(kind Kind, name string, loop int, user string) (lastHere, lastOfUser bool) {
	in := r.tables[kind].loadString(name)
	if in == nil {
		return false, false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead || in.perLoop[loop] == 0 {
		return false, false
	}
	in.total--
	in.perLoop[loop]--
	if in.perLoop[loop] == 0 {
		in.mask.Store(recomputeMask(in.perLoop))
	}
	if kind == KindRoom && in.users != nil {
		in.users[user]--
		if in.users[user] <= 0 {
			delete(in.users, user)
			lastOfUser = true
		}
	}
	if in.total == 0 {
		in.dead = true
		r.tables[kind].delete(name, in)
		return true, lastOfUser
	}
	return false, lastOfUser
}

func recomputeMask(perLoop []int32) uint64 {
	var m uint64
	for i, n := range perLoop {
		if n > 0 {
			m |= loopBit(i)
		}
	}
	return m
}

// count returns the number of local receivers of name (all loops).
func (r *registry) count(kind Kind, name []byte) int {
	in := r.lookup(kind, name)
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return int(in.total)
}

// roomUsers lists the users with a local connection in room, sorted.
func (r *registry) roomUsers(room []byte) []string {
	in := r.lookup(KindRoom, room)
	if in == nil {
		return []string{}
	}
	in.mu.Lock()
	users := make([]string, 0, len(in.users))
	for u := range in.users {
		users = append(users, u)
	}
	in.mu.Unlock()
	sort.Strings(users)
	return users
}

// hasLocal reports whether name has local receivers now: the truth that
// backplane interest follows (Host.HasLocal). Broadcasts always do.
func (r *registry) hasLocal(kind Kind, name string) bool {
	if kind == KindAll {
		return true
	}
	if kind > KindChannel {
		return false
	}
	in := r.tables[kind].loadString(name)
	if in == nil {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total > 0 && !in.dead
}

// each calls fn for every address with local receivers (Host.EachLocal).
func (r *registry) each(fn func(kind Kind, name string)) {
	for k := range r.tables {
		names, ins := r.tables[k].snapshot()
		for i, in := range ins {
			in.mu.Lock()
			live := in.total > 0 && !in.dead
			in.mu.Unlock()
			if live {
				fn(Kind(k), names[i])
			}
		}
	}
}

// usersOnline counts the users with local connections and those
// connections (the control API's info).
func (r *registry) usersOnline() (users, conns int) {
	_, ins := r.tables[KindUser].snapshot()
	for _, in := range ins {
		in.mu.Lock()
		if in.total > 0 {
			users++
			conns += int(in.total)
		}
		in.mu.Unlock()
	}
	return users, conns
}
