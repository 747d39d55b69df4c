package engine

import (
	"testing"
	"unsafe"

	"github.com/wsgate/wsgate/frame"
)

// TestConnSize reports the per-connection state the engine keeps and guards
// it against growth: it lives in every idle connection (docs/benchmarks.md
// has the whole per-connection breakdown, gnet's part included).
func TestConnSize(t *testing.T) {
	conn, dec := unsafe.Sizeof(Conn{}), unsafe.Sizeof(frame.Decoder{})
	t.Logf("engine.Conn: %d bytes (of which frame.Decoder: %d)", conn, dec)
	if conn > 192 {
		t.Errorf("engine.Conn grew to %d bytes; every idle connection pays for it", conn)
	}
}
