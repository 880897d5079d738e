package testlog

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// Timeout bounds every WaitFor. It is generous on purpose: it only decides
// when a test that is going to fail gives up, so a loaded 2-core machine
// running -race never hits it while the awaited state is on its way.
const Timeout = 30 * time.Second

// pollInterval is how often WaitFor re-checks its condition.
const pollInterval = 5 * time.Millisecond

// WaitFor re-checks cond until it holds and fails tb, naming what it waited
// for, if it does not within Timeout. It waits for a state, so it asserts
// nothing about how long reaching it takes; use it where the code under
// test offers no event to wait on.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	if cond() {
		return
	}
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			tb.Fatalf("timed out after %v waiting for %s", Timeout, what)
			return // only a fake tb's Fatalf returns
		case <-tick.C:
		}
	}
}

// Logger returns a debug-level text logger that writes to tb's output
// until tb's test ends (see Output); use New to also read what it logged.
func Logger(tb testing.TB) *slog.Logger {
	return LoggerAt(tb, slog.LevelDebug)
}

// LoggerAt is Logger at level: for code under load, whose debug lines
// would swamp the test's output.
func LoggerAt(tb testing.TB, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(Output(tb), &slog.HandlerOptions{Level: level}))
}

// Signature returns the sig parameter of a shared access signature (as it
// appears in the token, URL-encoded), or "" if token has none: the part of
// a token that must never reach a log (AssertNoSecrets).
func Signature(token string) string {
	_, after, ok := strings.Cut(token, "sig=")
	if !ok {
		return ""
	}
	sig, _, _ := strings.Cut(after, "&")
	return sig
}

// Setenv unsets, for tb's test, every environment variable that starts
// with one of prefixes followed by "_", then sets env, so a variable of
// the developer's shell cannot leak into a configuration test. Like
// tb.Setenv it cannot be used in parallel tests.
func Setenv(tb testing.TB, env map[string]string, prefixes ...string) {
	tb.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range prefixes {
			if strings.HasPrefix(k, p+"_") {
				tb.Setenv(k, "") // restores k after the test
				os.Unsetenv(k)
				break
			}
		}
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
}

// Scramble returns s with every ASCII letter and digit replaced by the
// next one of its kind (z→a, 9→0), other bytes kept: a secret of the same
// length and shape that shares no letter or digit position with s.
func Scramble(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+1)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+1)%26
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+1)%10
		}
	}
	return string(b)
}

// Echoes reports whether a text derived from an input holding secret
// carries the secret because of the secret: with holds the text made from
// the input, without the text made from the same input with the secret
// replaced by Scramble(secret). A secret that only coincides with other
// text (a field name, a constant in an error, another field's value) is
// in both, and is not counted. A secret Scramble cannot change (no letter
// or digit) proves nothing either way: false.
func Echoes(secret, with, without string) bool {
	if Scramble(secret) == secret {
		return false
	}
	return strings.Contains(with, secret) && !strings.Contains(without, secret)
}
