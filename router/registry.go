package router

import (
	"sort"
	"sync"
	"sync/atomic"
)

// interest records, for one address (a room, user or channel), which event
// loops of this instance have local receivers and how many. The delivery
// path only loads the loop mask (an atomic), so fan-out takes no lock; join,
// leave, auth and close update counts under the address's own mutex, never a
// global one.
type interest struct {
	mask atomic.Uint64 // bit i set: loop i has receivers (loops >= 64 share bit 63)

	mu      sync.Mutex // guards the fields below
	perLoop []int32
	total   int
	users   map[string]int // rooms only: user -> local connections in the room (presence)
	dead    bool           // removed from the registry; re-create on next add
}

// registry maps addresses to interest, one table per Kind.
type registry struct {
	loops  int
	tables [3]sync.Map // KindRoom, KindUser, KindChannel: string -> *interest
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
	v, ok := r.tables[kind].Load(string(name))
	if !ok {
		return nil
	}
	return v.(*interest)
}

// add counts one more receiver of name on loop; it returns whether this
// instance had none before (the backplane's interest turns on) and, for
// rooms, whether user had no connection in the room before (presence event).
func (r *registry) add(kind Kind, name string, loop int, user string) (firstHere, firstOfUser bool) {
	for {
		v, _ := r.tables[kind].LoadOrStore(name, &interest{perLoop: make([]int32, r.loops)})
		in := v.(*interest)
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
	v, ok := r.tables[kind].Load(name)
	if !ok {
		return false, false
	}
	in := v.(*interest)
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
		r.tables[kind].Delete(name)
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
	return in.total
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
	v, ok := r.tables[kind].Load(name)
	if !ok {
		return false
	}
	in := v.(*interest)
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total > 0 && !in.dead
}

// each calls fn for every address with local receivers (Host.EachLocal).
func (r *registry) each(fn func(kind Kind, name string)) {
	for k := range r.tables {
		r.tables[k].Range(func(key, v any) bool {
			in := v.(*interest)
			in.mu.Lock()
			live := in.total > 0 && !in.dead
			in.mu.Unlock()
			if live {
				fn(Kind(k), key.(string))
			}
			return true
		})
	}
}
