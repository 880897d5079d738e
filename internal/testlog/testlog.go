// Package testlog captures what code under test logs (or otherwise
// writes) so a test can read it while it is still being written, copy it
// to the test's output without writing there after the test has ended, and
// check that no secret reached it (Signature names a token's secret part).
// It also holds the other helpers tests share: WaitFor for a state without
// an event to wait on, Logger, and Setenv for configuration tests. It is
// for tests only; no production package imports it.
package testlog

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer collects everything written to it. It is safe for concurrent
// use; the zero value is ready and copies nowhere (Tee makes one that also
// copies to the test's output).
type Buffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	out   *cutoff       // copy of each write; nil: none
	wrote chan struct{} // buffered 1, made on first use
}

// Tee returns a Buffer that also copies each write to tb.Output() until
// tb's test ends; later writes (from goroutines that outlive the test) are
// still collected but no longer copied.
func Tee(tb testing.TB) *Buffer {
	return &Buffer{out: newCutoff(tb)}
}

// New returns a debug-level text logger writing into a Tee(tb) Buffer, and
// that Buffer.
func New(tb testing.TB) (*slog.Logger, *Buffer) {
	b := Tee(tb)
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// Write collects p, copies it to the test's output (Tee, until the test
// ends) and wakes a waiter on Wrote. It never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.b.Write(p)
	if b.out != nil {
		b.out.Write(p)
	}
	w := b.wroteLocked()
	b.mu.Unlock()
	select {
	case w <- struct{}{}:
	default:
	}
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Wrote returns a channel that receives after writes. It holds at most one
// pending wake-up for any number of writes, so a waiter re-reads String
// after each receive instead of counting them.
func (b *Buffer) Wrote() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wroteLocked()
}

func (b *Buffer) wroteLocked() chan struct{} {
	if b.wrote == nil {
		b.wrote = make(chan struct{}, 1)
	}
	return b.wrote
}

// Output returns a writer to tb.Output() that drops writes once tb's test
// has ended, for loggers whose late lines (a timer firing during shutdown)
// must not reach a finished test's output. It keeps nothing.
func Output(tb testing.TB) io.Writer { return newCutoff(tb) }

// cutoff writes to w until cut.
type cutoff struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

// newCutoff writes to tb.Output() until tb's test ends.
func newCutoff(tb testing.TB) *cutoff {
	c := &cutoff{w: tb.Output()}
	tb.Cleanup(c.cut)
	return c
}

func (c *cutoff) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *cutoff) cut() {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
}

// AssertNoSecrets fails tb for every secret that occurs in logs, naming it
// by position and a short prefix only. An empty secret is a mistake in the
// test (it occurs everywhere) and fails it at once.
func AssertNoSecrets(tb testing.TB, logs string, secrets ...string) {
	tb.Helper()
	for i, s := range secrets {
		if s == "" {
			tb.Fatalf("AssertNoSecrets: secret %d is empty", i+1)
			return
		}
		if strings.Contains(logs, s) {
			tb.Errorf("logs contain secret %d of %d (%.6q…, %d bytes)", i+1, len(secrets), s, len(s))
		}
	}
}
