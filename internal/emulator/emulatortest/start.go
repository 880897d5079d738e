// Package emulatortest starts an in-process relay emulator for other
// packages' tests.
package emulatortest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/testlog"
)

// KeyName is the name of the Manage rule Start configures.
const KeyName = emulator.DevKeyName

// Start runs an emulator on 127.0.0.1:0 with one namespace-level Manage
// rule (KeyName, a random key) and AutoCreate on, after applying opts to
// the config. It logs at debug level to tb.Output() and is closed by
// tb.Cleanup. Use s.Credentials(entity) to reach it.
func Start(tb testing.TB, opts ...func(*emulator.Config)) *emulator.Server {
	tb.Helper()
	return StartLogged(tb, testlog.Logger(tb).With("component", "emulator"), opts...)
}

// StartLogged is Start logging to log, for a test that reads what the
// emulator logged (testlog.New).
func StartLogged(tb testing.TB, log *slog.Logger, opts ...func(*emulator.Config)) *emulator.Server {
	tb.Helper()
	cfg := emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      []emulator.Rule{emulator.DevRule()},
		AutoCreate: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := emulator.New(cfg, log, nil)
	if err != nil {
		tb.Fatalf("emulatortest: new: %v", err)
	}
	if err := s.Open(); err != nil {
		tb.Fatalf("emulatortest: open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			tb.Errorf("emulatortest: close: %v", err)
		}
	})
	return s
}

// RandomKey returns a fresh 256-bit key, base64-encoded like Azure's.
func RandomKey() string { return emulator.RandomKey() }
