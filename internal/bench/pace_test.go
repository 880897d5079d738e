package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// An open loop hands out every arrival of its window, each once.
func TestOpenLoopOffersEveryArrival(t *testing.T) {
	var calls atomic.Int64
	res := openLoop(t.Context(), 2000, 4, 100*time.Millisecond, func(context.Context, int) error {
		calls.Add(1)
		return nil
	})
	if res.OK != 200 || calls.Load() != 200 || res.Measured != 200 {
		t.Fatalf("offered 200 arrivals: ok %d, calls %d, measured %d", res.OK, calls.Load(), res.Measured)
	}
}

// A pacer's wait ends when its context does, however far the next tick.
func TestPacerWaitEndsWithContext(t *testing.T) {
	for name, newP := range map[string]func(context.Context) pacer{
		"default": func(ctx context.Context) pacer { return newPacer(ctx, time.Hour) },
		"timer":   newTimerPacer,
	} {
		ctx, cancel := context.WithCancel(t.Context())
		p := newP(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.wait(time.Now().Add(time.Hour))
		}()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatalf("%s pacer: wait did not end with its context", name)
		}
		p.stop()
	}
}
