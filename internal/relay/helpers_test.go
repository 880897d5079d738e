package relay_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

// waitLimit bounds every wait for an event in this package's tests: the
// shared testlog.Timeout, generous so that a loaded machine cannot fail a
// test; a correct run never comes near it. Tests assert on events and
// states, never on elapsed time.
const waitLimit = testlog.Timeout

// waitFor polls cond until it holds (testlog.WaitFor). Use it only where no
// channel or hook signals the event.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testlog.WaitFor(tb, what, cond)
}

// waitCtx is a context bounding one test step (waitLimit).
func waitCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	tb.Cleanup(cancel)
	return ctx
}

// testLogger is testlog.Logger tagged with component.
func testLogger(tb testing.TB, component string) *slog.Logger {
	return testlog.Logger(tb).With("component", component)
}
