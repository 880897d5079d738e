package relay_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// poolGoroutines counts the goroutines running the pool's code: a
// connection's writer or reader, a dial, a ping.
func poolGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		for _, f := range []string{"internal/relay.(*conn)", "internal/relay.(*slot)", "internal/relay.(*Pool)"} {
			if bytes.Contains(g, []byte(f)) {
				n++
				break
			}
		}
	}
	return n
}

// TestPoolIdleConnectionGoroutines checks that an idle pooled connection
// costs two goroutines, its writer and its reader (each a stack of a few
// KiB): no supervisor per slot, no pinger between pings. Not parallel, so
// that only this pool's goroutines are counted.
func TestPoolIdleConnectionGoroutines(t *testing.T) {
	base := poolGoroutines()
	s := startPoolSink(t)
	const size = 4
	p := newPoolOnSink(t, s, relay.PoolConfig{Size: size})
	if err := p.Send(t.Context(), relay.Message{Type: relay.MessageText, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two goroutines per idle connection", func() bool { return poolGoroutines()-base == 2*size })
}

// TestPoolReplacesAgedConnections checks make-before-break replacement at
// MaxConnAge: every Send succeeds while connections are replaced, and the
// goroutines of replaced connections exit (Close, at cleanup, waits for
// every one of them).
func TestPoolReplacesAgedConnections(t *testing.T) {
	t.Parallel()
	s := startPoolSink(t)
	const size = 2
	p := newPoolOnSink(t, s, relay.PoolConfig{Size: size, MaxConnAge: 100 * time.Millisecond})
	sent := 0
	waitFor(t, "6 replacements", func() bool {
		if err := p.Send(t.Context(), seqMessage(sent, 100)); err != nil {
			t.Fatalf("send %d during replacement: %v", sent, err)
		}
		sent++
		return s.conns.Load() >= size+6
	})
	waitFor(t, "every message received", func() bool { return s.msgs.Load() == int64(sent) })
}
