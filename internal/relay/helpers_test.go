package relay_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

// waitLimit bounds every wait for an event in this package's tests. It is
// generous so that a loaded machine cannot fail a test; a correct run never
// comes near it. Tests assert on events and states, never on elapsed time.
const waitLimit = 30 * time.Second

// waitFor polls cond until it holds, failing the test after waitLimit.
// Use it only where no channel or hook signals the event.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		<-tick.C
	}
}

// waitCtx is a context bounding one test step (waitLimit).
func waitCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	tb.Cleanup(cancel)
	return ctx
}

// testLogger logs at debug level to the test's output (and keeps it, see
// testlog.New), tagged with component.
func testLogger(tb testing.TB, component string) *slog.Logger {
	log, _ := testlog.New(tb)
	return log.With("component", component)
}
