package testlog_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestBufferCollectsAndWakes(t *testing.T) {
	t.Parallel()
	var b testlog.Buffer
	select {
	case <-b.Wrote():
		t.Fatal("woken before any write")
	default:
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	select {
	case <-b.Wrote():
	default:
		t.Fatal("no wake-up after writes")
	}
	if got := strings.Count(b.String(), "\n"); got != 10 {
		t.Errorf("got %d lines, want 10:\n%s", got, b.String())
	}
}

func TestNewLogsDebug(t *testing.T) {
	t.Parallel()
	log, b := testlog.New(t)
	log.Debug("hello", "k", "v")
	if !strings.Contains(b.String(), "level=DEBUG msg=hello k=v") {
		t.Errorf("got %q, want the debug line", b.String())
	}
}

func TestTeeStopsCopyingAfterTheTest(t *testing.T) {
	t.Parallel()
	tb := &fakeTB{TB: t}
	b := testlog.Tee(tb)
	w := testlog.Output(tb)
	b.Write([]byte("during\n"))
	w.Write([]byte("plain\n"))
	tb.end()
	b.Write([]byte("after\n"))
	w.Write([]byte("late\n"))
	if got := tb.out.String(); got != "during\nplain\n" {
		t.Errorf("test output: got %q, want only what was written during the test", got)
	}
	if got := b.String(); got != "during\nafter\n" {
		t.Errorf("buffer: got %q, want both lines", got)
	}
}

// fakeTB is a testing.TB that records failures instead of failing, and
// output and cleanups instead of passing them on.
type fakeTB struct {
	testing.TB
	errs     []string
	fatal    bool
	out      bytes.Buffer
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Output() io.Writer { return &f.out }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
}

// end runs the cleanups, last registered first, as the end of a test does.
func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestAssertNoSecrets(t *testing.T) {
	t.Parallel()
	const key = "c2VjcmV0LWtleS12YWx1ZS0xMjM0NTY3ODkw"
	tests := []struct {
		name    string
		logs    string
		secrets []string
		want    int // failures
		fatal   bool
	}{
		{"clean", "msg=ok entity=hc1", []string{key, "sig="}, 0, false},
		{"one leaked", "msg=bad key=" + key, []string{"sig=", key}, 1, false},
		{"two leaked", "sig=abc key=" + key, []string{"sig=", key}, 2, false},
		{"empty secret", "anything", []string{key, ""}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeTB{TB: t}
			testlog.AssertNoSecrets(r, tt.logs, tt.secrets...)
			if len(r.errs) != tt.want || r.fatal != tt.fatal {
				t.Fatalf("got failures %q (fatal %v), want %d (fatal %v)", r.errs, r.fatal, tt.want, tt.fatal)
			}
			for _, e := range r.errs {
				if strings.Contains(e, key) {
					t.Errorf("failure %q shows the whole secret", e)
				}
			}
		})
	}
}
