package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/relay"
)

// runListener starts a Listener on emu's entity with cfg (Credentials
// filled in if empty), waits until its control channel is up and stops it
// at cleanup, failing if Run returned an error.
func runListener(t *testing.T, emu *emulator.Server, entity string, cfg relay.ListenerConfig) *relay.Listener {
	t.Helper()
	l, errc := startListener(t, emu, entity, cfg)
	if err := l.WaitConnected(waitCtx(t)); err != nil {
		select {
		case err := <-errc:
			t.Fatalf("Run returned %v", err)
		default:
		}
		t.Fatalf("listener did not connect: %v", err)
	}
	return l
}

// startListener starts Run in a goroutine; Close and the wait for Run are
// registered for cleanup. errc yields Run's result once.
func startListener(t *testing.T, emu *emulator.Server, entity string, cfg relay.ListenerConfig) (*relay.Listener, <-chan error) {
	t.Helper()
	if cfg.Credentials == (relay.Credentials{}) {
		cfg.Credentials = emu.ListenerCredentials(entity)
	}
	if cfg.Backoff == nil {
		cfg.Backoff = []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond}
	}
	l, err := relay.NewListener(cfg, testLogger(t, "listener"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		errc <- l.Run(context.Background())
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after Close")
		}
	})
	return l, errc
}

// runError waits for the Run of a listener from startListener to return
// on errc and returns its error, failing the test if it does not.
func runError(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-waitCtx(t).Done():
		t.Fatal("Run did not return")
		return nil
	}
}

// echo is a ConnHandler that sends every message back.
func echo(ctx context.Context, c *relay.ListenerConn) {
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

func dial(t *testing.T, emu *emulator.Server, entity string, o relay.DialOptions) *websocket.Conn {
	t.Helper()
	ws, err := relay.Dial(waitCtx(t), emu.Credentials(entity), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (seed+byte(i))%26
	}
	return b
}
