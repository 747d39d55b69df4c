package router

import (
	"testing"
	"unsafe"
)

// TestIdleStateSizes pins the size of the router's state per idle
// connection, which docs/architecture.md ("What a connection costs")
// counts: a field added to one of these structs moves it to the next
// allocation size class for every connection, so do it knowingly and
// update the doc.
func TestIdleStateSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"client", unsafe.Sizeof(client{}), 192},
		{"membership", unsafe.Sizeof(membership{}), 32},
		{"interest", unsafe.Sizeof(interest{}), 64},
		{"memberSet", unsafe.Sizeof(memberSet{}), 24},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, want at most %d (docs/architecture.md, What a connection costs)", c.name, c.size, c.max)
		}
	}
}
