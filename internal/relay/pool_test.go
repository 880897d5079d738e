package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func TestPoolSendAllocs(t *testing.T) {
	s := startSink(t)
	p := newSinkPool(t, s, relay.PoolConfig{Size: 2})
	msg := relay.Message{ID: "a", Type: relay.MessageBinary, Data: make([]byte, 512)}
	ctx := context.Background()
	for range 100 { // warm up the free list and the connections' buffers
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	sent := int64(100)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		sent++
	})
	if allocs != 0 {
		t.Errorf("Send allocates %v times per message, want 0", allocs)
	}
	waitFor(t, 5*time.Second, "all messages at the sink", func() bool { return s.msgs.Load() == sent })
}
