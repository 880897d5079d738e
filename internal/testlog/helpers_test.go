package testlog_test

import (
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var ready atomic.Bool
		time.AfterFunc(time.Second, func() { ready.Store(true) })
		tb := &fakeTB{TB: t}
		testlog.WaitFor(tb, "ready", ready.Load)
		if len(tb.errs) != 0 || !ready.Load() {
			t.Errorf("got failures %q, ready %v; want none, true", tb.errs, ready.Load())
		}
	})
}

func TestWaitForFailsAfterTimeoutNamingWhat(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tb := &fakeTB{TB: t}
		start := time.Now()
		testlog.WaitFor(tb, "the moon", func() bool { return false })
		if !tb.fatal || len(tb.errs) != 1 || !strings.Contains(tb.errs[0], "the moon") {
			t.Errorf("got failures %q (fatal %v), want one fatal naming what", tb.errs, tb.fatal)
		}
		if got := time.Since(start); got != testlog.Timeout {
			t.Errorf("gave up after %v, want %v", got, testlog.Timeout)
		}
	})
}

func TestLoggerWritesDebugToTheTestOutput(t *testing.T) {
	t.Parallel()
	tb := &fakeTB{TB: t}
	testlog.Logger(tb).Debug("hello")
	if !strings.Contains(tb.out.String(), "level=DEBUG msg=hello") {
		t.Errorf("got %q, want the debug line", tb.out.String())
	}
}

func TestLoggerAtDropsLinesBelowLevel(t *testing.T) {
	t.Parallel()
	tb := &fakeTB{TB: t}
	log := testlog.LoggerAt(tb, slog.LevelWarn)
	log.Info("quiet")
	log.Warn("loud")
	if got := tb.out.String(); strings.Contains(got, "quiet") || !strings.Contains(got, "level=WARN msg=loud") {
		t.Errorf("got %q, want only the warning", got)
	}
}

func TestSignature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, token, want string
	}{
		{"middle", "SharedAccessSignature sr=http%3a%2f%2fns%2fhc&sig=abc%2Bd%3D&se=1&skn=send", "abc%2Bd%3D"},
		{"last", "SharedAccessSignature sr=x&se=1&skn=send&sig=xyz", "xyz"},
		{"none", "SharedAccessSignature sr=x&se=1", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := testlog.Signature(tt.token); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetenvClearsPrefixesAndSets(t *testing.T) {
	// Not parallel: it changes the process environment.
	t.Setenv("TESTLOGX_STRAY", "from the shell")
	t.Setenv("TESTLOGXOTHER", "kept")
	testlog.Setenv(t, map[string]string{"TESTLOGX_SET": "v"}, "TESTLOGX")
	if _, ok := os.LookupEnv("TESTLOGX_STRAY"); ok {
		t.Error("TESTLOGX_STRAY is still set")
	}
	if got := os.Getenv("TESTLOGX_SET"); got != "v" {
		t.Errorf("TESTLOGX_SET: got %q, want v", got)
	}
	if got := os.Getenv("TESTLOGXOTHER"); got != "kept" {
		t.Errorf("TESTLOGXOTHER: got %q, want kept (no _ after the prefix)", got)
	}
}

func TestScrambleAndEchoes(t *testing.T) {
	if got := testlog.Scramble("az-AZ_09+/="); got != "ba-BA_10+/=" {
		t.Errorf("Scramble = %q", got)
	}
	key := "8h3Zs0Xr"
	for _, tc := range []struct {
		with, without string
		want          bool
	}{
		{"bad key " + key, "bad key " + testlog.Scramble(key), true},            // the key itself
		{"name " + key + "4bY5 invalid", "name " + key + "4bY5 invalid", false}, // part of another field
		{"no key here", "no key here", false},                                   // absent
	} {
		if got := testlog.Echoes(key, tc.with, tc.without); got != tc.want {
			t.Errorf("Echoes(%q, %q, %q) = %v, want %v", key, tc.with, tc.without, got, tc.want)
		}
	}
	if testlog.Echoes("++++////", "++++////", "") {
		t.Error("a secret Scramble cannot change proves nothing")
	}
}
