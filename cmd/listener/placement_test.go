package main

import (
	"errors"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestTokenPlacement: against a relay that accepts the token only in the
// query, the listener exits with 401 by default and connects with
// LISTENER_TOKEN_PLACEMENT=auto (or query), without printing the key.
func TestTokenPlacement(t *testing.T) {
	em := emulatortest.Start(t, func(c *emulator.Config) { c.QueryTokenOnly = true })
	creds := em.ListenerCredentials(entity)

	s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(creds)})
	if err := s.wait(t); !errors.Is(err, relay.ErrUnauthorized) {
		t.Fatalf("header placement: got %v, want ErrUnauthorized", err)
	}
	noSecret(t, creds.Key, s.stdout, s.stderr)

	for _, p := range []string{"auto", "query"} {
		s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(creds), "LISTENER_TOKEN_PLACEMENT": p})
		waitListening(t, em, s)
		s.stop(t)
		noSecret(t, creds.Key, s.stdout, s.stderr)
		noSecret(t, "sig=", s.stdout, s.stderr)
		testlog.WaitFor(t, "the listener gone from the emulator", func() bool { return em.ListenerCount(entity) == 0 })
	}
}
