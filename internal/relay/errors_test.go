package relay_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// typedSentinels are the sentinels a relay answer (or its absence) maps to;
// an error matches exactly one of them.
var typedSentinels = []error{relay.ErrUnauthorized, relay.ErrForbidden, relay.ErrEntityNotFound, relay.ErrNoListener,
	relay.ErrTimeout, relay.ErrServerError, relay.ErrUnreachable}

func assertOneSentinel(t *testing.T, what string, err, want error) {
	t.Helper()
	n := 0
	for _, s := range typedSentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 || !errors.Is(err, want) {
		t.Errorf("%s: got %v (matches %d sentinels), want exactly %v", what, err, n, want)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestHTTPSenderTypedErrors checks what the emulator answers in HTTP
// request mode for each failure, as HTTPSender.Send reports it: a wrong
// EntityPath (404 "Endpoint does not exist") is not "no listener" (502
// "could not be routed to any listener").
func TestHTTPSenderTypedErrors(t *testing.T) {
	t.Parallel()
	listenKey := emulatortest.RandomKey()
	emu := emulatortest.Start(t, func(c *emulator.Config) {
		c.AutoCreate = false
		c.Entities = []emulator.Entity{{Name: "hc1", RequiresClientAuthorization: true}}
		c.Rules = append(c.Rules, emulator.Rule{Name: "listenonly", Key: listenKey, Rights: emulator.RightListen})
	})
	wrongKey := emu.Credentials("hc1")
	wrongKey.Key = emulatortest.RandomKey()
	listenOnly := emu.Credentials("hc1")
	unreachable := emu.Credentials("hc1")
	unreachable.Host = closedAddr(t)
	listenOnly.KeyName, listenOnly.Key = "listenonly", listenKey
	for _, tt := range []struct {
		name  string
		creds relay.Credentials
		want  error
	}{
		{"wrong EntityPath", emu.Credentials("nosuch"), relay.ErrEntityNotFound},
		{"no listener", emu.Credentials("hc1"), relay.ErrNoListener},
		{"wrong key", wrongKey, relay.ErrUnauthorized},
		{"no Send right", listenOnly, relay.ErrForbidden},
		{"unreachable", unreachable, relay.ErrUnreachable},
	} {
		resp, err := (&relay.HTTPSender{Credentials: tt.creds}).Send(waitCtx(t), http.MethodGet, "", nil, nil, nil)
		if resp != nil {
			resp.Body.Close()
			t.Errorf("%s: got a response %s", tt.name, resp.Status)
			continue
		}
		assertOneSentinel(t, tt.name, err, tt.want)
		var se *relay.StatusError
		if errors.As(err, &se) && !strings.Contains(se.Reason, "TrackingId:") {
			t.Errorf("%s: reason phrase %q lacks the tracking id", tt.name, se.Reason)
		}
	}
}

// TestDialTypedErrors checks the same over WebSockets. The relay (and the
// emulator) answer a connect to a missing hybrid connection exactly as one
// with no listener (404 "Endpoint does not exist"), so both are
// ErrNoListener; a listen tells them apart.
func TestDialTypedErrors(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t, func(c *emulator.Config) {
		c.AutoCreate = false
		c.Entities = []emulator.Entity{{Name: "hc1", RequiresClientAuthorization: true}}
	})
	unreachable := emu.Credentials("hc1")
	unreachable.Host = closedAddr(t)
	for _, tt := range []struct {
		name  string
		creds relay.Credentials
		want  error
	}{
		{"no listener", emu.Credentials("hc1"), relay.ErrNoListener},
		{"wrong EntityPath", emu.Credentials("nosuch"), relay.ErrNoListener},
		{"unreachable", unreachable, relay.ErrUnreachable},
	} {
		_, err := relay.Dial(waitCtx(t), tt.creds, relay.DialOptions{})
		assertOneSentinel(t, tt.name, err, tt.want)
	}
	l, err := relay.NewListener(relay.ListenerConfig{Credentials: emu.ListenerCredentials("nosuch"), ConnHandler: echo}, testLogger(t, "listener"))
	if err != nil {
		t.Fatal(err)
	}
	assertOneSentinel(t, "listen on a wrong EntityPath", l.Run(waitCtx(t)), relay.ErrEntityNotFound)
}

// TestPoolReadinessNamesTypedCause: the pool's not-ready reason and its
// Send error carry the same typed cause.
func TestPoolReadinessNamesTypedCause(t *testing.T) {
	t.Parallel()
	creds := relay.Credentials{Host: closedAddr(t), EntityPath: "hc1", KeyName: "k", Key: testKey, Insecure: true}
	p := newTestPool(t, creds, nil, nil)
	waitFor(t, "the reason relay unreachable", func() bool { _, r := p.Ready(); return r == "relay unreachable" })
	err := p.Send(context.Background(), seqMessage(0, 1))
	if !errors.Is(err, relay.ErrUnavailable) || !errors.Is(err, relay.ErrUnreachable) || strings.Contains(err.Error(), testKey) {
		t.Errorf("Send: got %v, want ErrUnavailable and ErrUnreachable", err)
	}
}
