package engine

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/frame"
)

// Large shared frames are written from the shared copy with one writev
// (writeSharedDirect); what the kernel refuses is copied into the cork and
// handed over like any flushed cork. These tests check the bytes and the
// slow-consumer accounting on both sides of that path.

// bigPayload is a payload of n bytes that names message k throughout, so a
// frame cut or spliced anywhere is caught.
func bigPayload(k, n int) []byte {
	p := bytes.Repeat([]byte(fmt.Sprintf("<%06d>", k)), n/8+1)
	return p[:n]
}

// TestSharedLargeFramesInterleaved writes, per round, a small frame, a
// 16 KiB shared frame and another small frame to every connection: all of
// them arrive intact and in order, at readers that keep up, at readers that
// pause between rounds, and at readers that start reading only after
// everything was written (so the kernel
// refuses part of the shared frames and their rest goes through the cork
// and gnet).
// It runs with the kernel's default send buffer and with a small one.
func TestSharedLargeFramesInterleaved(t *testing.T) {
	for _, sndbuf := range []int{0, 16 << 10, 64 << 10} {
		t.Run(fmt.Sprintf("sndbuf=%d", sndbuf), func(t *testing.T) { sharedLargeFramesInterleaved(t, sndbuf) })
	}
}

func sharedLargeFramesInterleaved(t *testing.T, sndbuf int) {
	const (
		rounds  = 150
		readers = 6
		late    = 2 // readers that read only after the last round
		size    = 16 << 10
	)
	opts := perfOptions()
	opts.Loops = 1
	opts.MaxQueueBytes = 64 << 20  // no 4009 here: the late readers take all of it
	opts.SocketSendBuffer = sndbuf // small: the kernel takes frames in part
	e := startEngine(t, opts, BaseHandler{})
	l := e.Loops()[0]
	clients := make([]*rawClient, readers+late)
	for i := range clients {
		clients[i], _ = dialUpgraded(t, e)
	}
	checkFor(t, ioTimeout, func() error {
		n := onLoop(t, l, func(l *Loop) int { return len(l.Conns()) })
		if n != len(clients) {
			return fmt.Errorf("%d connections on the loop, want %d", n, len(clients))
		}
		return nil
	})
	want := func(k, i int) (byte, []byte) {
		switch i {
		case 0:
			return opText, bigPayload(k, 3000)
		case 1:
			return opBinary, bigPayload(k, size)
		default:
			return opText, []byte(fmt.Sprintf("after %d", k))
		}
	}
	read := func(c *rawClient, paced bool) error {
		for k := 0; k < rounds; k++ {
			if paced {
				// lets the kernel's buffer fill and drain again, so that
				// writes find it partly full with gnet holding nothing
				time.Sleep(time.Millisecond)
			}
			for i := 0; i < 3; i++ {
				f, err := c.readFrameErr(ioTimeout)
				if err != nil {
					return fmt.Errorf("round %d frame %d: %w", k, i, err)
				}
				op, p := want(k, i)
				if f.op != op || !f.fin || !bytes.Equal(f.payload, p) {
					return fmt.Errorf("round %d frame %d: got %v %.40q, want op %d, %d bytes %.40q", k, i, f, f.payload, op, len(p), p)
				}
			}
		}
		return nil
	}
	errs := make(chan error, len(clients))
	for i, c := range clients[:readers] {
		go func() { errs <- read(c, i%2 == 1) }()
	}
	for k := 0; k < rounds; k++ {
		s := frame.NewShared(ws.OpBinary, bigPayload(k, size))
		ok := l.Post(Task{Fn: func(l *Loop, _ any) {
			for _, c := range l.Conns() {
				op, p := want(k, 0)
				c.WriteMessage(ws.OpCode(op), p)
				c.WriteShared(s)
				op, p = want(k, 2)
				c.WriteMessage(ws.OpCode(op), p)
			}
			s.Release()
		}})
		if !ok {
			t.Fatal("Post: loop not running")
		}
	}
	for _, c := range clients[readers:] {
		go func() { errs <- read(c, false) }()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := sumStats(t, e); st.SlowConsumers != 0 {
		t.Fatalf("%d slow consumers, want none", st.SlowConsumers)
	}
}

// TestSharedLargeSlowConsumer writes 16 KiB shared frames and small frames
// to a client that does not read, settling the loop after each write, and
// checks the accounting at every step: the connection is closed with 4009
// exactly when its queued bytes (gnet's buffer and the cork) pass
// MaxQueueBytes at a flush, gnet never holds more than WriteHighWater and
// one frame, and the client then reads a gapless run of whole frames
// followed by the 4009 close frame.
func TestSharedLargeSlowConsumer(t *testing.T) {
	const size = 16 << 10
	opts := perfOptions()
	opts.Loops = 1
	opts.WriteHighWater = 8 << 10 // below the frame size: a frame's rest must be cut exactly
	opts.WriteLowWater = 4 << 10
	opts.MaxQueueBytes = 256 << 10
	opts.SocketSendBuffer = 16 << 10
	e := startEngine(t, opts, BaseHandler{})
	l := e.Loops()[0]
	client, _ := dialUpgraded(t, e)
	c := soleConn(t, l)
	bigLen := frame.HeaderSize(size) + size
	closedAt := -1
	for k := 0; k < 2000 && closedAt < 0; k++ {
		fail := onLoop(t, l, func(l *Loop) error {
			if k%2 == 0 {
				s := frame.NewShared(ws.OpBinary, bigPayload(k, size))
				c.WriteShared(s)
				s.Release()
			} else {
				c.WriteMessage(ws.OpBinary, bigPayload(k, 100))
			}
			queued := c.Queued()
			sent := l.stats.BytesOut
			l.settle()
			atFlush := queued - int(l.stats.BytesOut-sent)
			closing := c.State() >= StateClosing
			switch {
			case closing != (atFlush > opts.MaxQueueBytes):
				return fmt.Errorf("write %d: %d bytes queued at the flush (limit %d), closing %v", k, atFlush, opts.MaxQueueBytes, closing)
			case !closing && c.gc.OutboundBuffered() > opts.WriteHighWater+bigLen:
				return fmt.Errorf("write %d: gnet holds %d bytes, more than the high-water mark %d and one frame", k, c.gc.OutboundBuffered(), opts.WriteHighWater)
			case closing:
				closedAt = k
			}
			return nil
		})
		if fail != nil {
			t.Fatal(fail)
		}
	}
	t.Logf("4009 after write %d", closedAt)
	if closedAt < 0 {
		t.Fatal("no 4009 after 2000 writes to a client that does not read")
	}
	for k := 0; ; k++ {
		f := client.readFrame()
		if f.op == opClose {
			if f.closeCode() != uint16(CloseSlowConsumer) {
				t.Fatalf("close code %d, want %d", f.closeCode(), CloseSlowConsumer)
			}
			if k == 0 || k > closedAt {
				t.Fatalf("%d data frames before the close frame, want 1..%d", k, closedAt)
			}
			break
		}
		n := size
		if k%2 == 1 {
			n = 100
		}
		if f.op != opBinary || !f.fin || !bytes.Equal(f.payload, bigPayload(k, n)) {
			t.Fatalf("frame %d: got %v %.40q, want %d bytes %.40q", k, f, f.payload, n, bigPayload(k, n))
		}
	}
	if st := sumStats(t, e); st.SlowConsumers != 1 {
		t.Fatalf("%d slow consumers, want 1", st.SlowConsumers)
	}
}

// TestSharedLargeWriteAllocs checks that a 16 KiB broadcast costs O(1)
// allocations, not O(receivers), on the direct-write path too.
func TestSharedLargeWriteAllocs(t *testing.T) {
	if perfRaceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	const rounds = 50
	const slack = 10
	measure := func(n int) float64 {
		f := newFanout(t, BaseHandler{}, n)
		payload := bytes.Repeat([]byte("L"), 16<<10)
		per := int64(n * perfServerFrameLen(len(payload)))
		return f.mallocsPerRound(t, per, rounds, func() error {
			perfPostShared(f.e, payload)
			return nil
		})
	}
	small, large := measure(20), measure(200)
	t.Logf("mallocs per 16 KiB broadcast: N=20: %.2f, N=200: %.2f", small, large)
	if large-small >= slack {
		t.Errorf("broadcast allocations grow with receivers: N=20 %.2f, N=200 %.2f mallocs per broadcast (limit +%d)", small, large, slack)
	}
}

// TestSharedLargePartialThenClose writes 60 KiB shared frames in one task to
// a client that does not read until the kernel takes one only in part (the
// direct write leaves the frame's rest at the head of the cork), then closes
// the connection as a slow consumer in the same task, before any flush: the
// client must read whole frames, the partly written one completed, and then
// the 4009 close frame.
//
// 200 KiB is above what a 16-bit partialHead could count: such frames took
// the copy path before, and the kernel never took one of them in part.
func TestSharedLargePartialThenClose(t *testing.T) {
	for _, size := range []int{60 << 10, 200 << 10} {
		t.Run(fmt.Sprintf("%dKiB", size>>10), func(t *testing.T) { sharedLargePartialThenClose(t, size) })
	}
}

func sharedLargePartialThenClose(t *testing.T, size int) {
	// size is large against the send buffer: the kernel takes one in part
	opts := perfOptions()
	opts.Loops = 1
	opts.SocketSendBuffer = 4 << 10
	e := startEngine(t, opts, BaseHandler{})
	l := e.Loops()[0]
	client, _ := dialUpgraded(t, e)
	c := soleConn(t, l)
	written := onLoop(t, l, func(l *Loop) int {
		for k := 0; k < 200; k++ {
			s := frame.NewShared(ws.OpBinary, bigPayload(k, size))
			c.WriteShared(s)
			s.Release()
			if c.partialHead != 0 {
				c.CloseSlowConsumer()
				return k + 1
			}
		}
		return 0
	})
	if written == 0 {
		t.Fatal("no shared frame was written in part by the kernel after 200 frames")
	}
	for k := 0; ; k++ {
		f := client.readFrame()
		if f.op == opClose {
			if f.closeCode() != uint16(CloseSlowConsumer) {
				t.Fatalf("close code %d, want %d", f.closeCode(), CloseSlowConsumer)
			}
			if k != written {
				t.Fatalf("%d data frames before the close frame, want %d (the partly written one completed)", k, written)
			}
			break
		}
		if f.op != opBinary || !f.fin || !bytes.Equal(f.payload, bigPayload(k, size)) {
			t.Fatalf("frame %d: got %v %.40q, want %d bytes %.40q", k, f, f.payload, size, bigPayload(k, size))
		}
	}
}

// soleConn waits until l holds one connection and returns it.
func soleConn(t *testing.T, l *Loop) *Conn {
	t.Helper()
	var c *Conn
	checkFor(t, ioTimeout, func() error {
		c = onLoop(t, l, func(l *Loop) *Conn {
			if len(l.Conns()) == 1 {
				return l.Conns()[0]
			}
			return nil
		})
		if c == nil {
			return fmt.Errorf("connection not on the loop yet")
		}
		return nil
	})
	return c
}
