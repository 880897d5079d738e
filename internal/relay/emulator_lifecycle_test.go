package relay_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestEmulatorReconnectAfterDrop(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	l := runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo})
	emu.DropConnections()
	// The listener notices (read error) and reconnects with the backoff.
	ctx := waitCtx(t)
	waitFor(t, "the listener to reconnect", func() bool { return l.Sessions() >= 2 && emu.ListenerCount("hc1") == 1 })
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ws.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3})
	if _, data, err := ws.Read(ctx); err != nil || !bytes.Equal(data, []byte{1, 2, 3}) {
		t.Fatalf("echo after reconnect: %v %v", data, err)
	}
}

func TestEmulatorExpiredControlChannelGets1008(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) { // fake clock: token expiry
		emu, client := serveMemEmulator(t, func(c *emulator.Config) { c.TokenGrace = time.Nanosecond })
		c := emu.ListenerCredentials("hc1")
		c.Host = memHost
		tok, exp, _ := c.Token(time.Now(), 2*time.Second)
		u := c.WebSocketURL(relay.ActionListen, relay.URLOptions{})
		ws, _, err := websocket.Dial(t.Context(), u.String(), &websocket.DialOptions{HTTPClient: client, HTTPHeader: http.Header{relay.HeaderAuthorization: {tok}}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		_, _, err = ws.Read(t.Context())
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("got %v, want close 1008", err)
		}
		if time.Now().Before(exp) {
			t.Fatalf("closed before the token expired")
		}

		// A Listener with renewal disabled is cut the same way and
		// reconnects with a fresh token.
		lc := emu.ListenerCredentials("hc2")
		lc.Host = memHost
		l := runListener(t, nil, "hc2", relay.ListenerConfig{Credentials: lc, HTTPClient: client, ConnHandler: echo, TokenTTL: 2 * time.Second, RenewBefore: -1})
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if err := l.WaitConnected(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := l.Sessions(); n < 2 {
			t.Fatalf("%d sessions after the token expired; want the listener cut and reconnected", n)
		}
	})
}

func TestEmulatorRenewTokenKeepsControlChannel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) { // fake clock: three token lifetimes
		emu, client := serveMemEmulator(t, func(c *emulator.Config) { c.TokenGrace = time.Nanosecond })
		lc := emu.ListenerCredentials("hc1")
		lc.Host = memHost
		l := runListener(t, nil, "hc1", relay.ListenerConfig{Credentials: lc, HTTPClient: client, ConnHandler: echo, TokenTTL: 2 * time.Second, RenewBefore: time.Second})
		for range 12 {
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
			if n := l.Sessions(); n != 1 || !l.Connected() {
				t.Fatalf("control channel was reopened (%d sessions)", n)
			}
		}
		sc := emu.Credentials("hc1")
		sc.Host = memHost
		ws, err := relay.Dial(t.Context(), sc, relay.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		ws.Write(t.Context(), websocket.MessageText, []byte("still here"))
		if _, data, err := ws.Read(t.Context()); err != nil || string(data) != "still here" {
			t.Fatalf("echo: %q %v", data, err)
		}
	})
}

func TestEmulatorListenerCloseStopsHandlers(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	handlerStarted, handlerDone := make(chan struct{}), make(chan struct{})
	l, errc := startListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		defer close(handlerDone)
		close(handlerStarted)
		<-ctx.Done()
	}})
	if err := l.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	// The sender's dial can return before the listener's side of the
	// rendezvous has: a Close then would (rightly) skip the handler.
	select {
	case <-handlerStarted:
	case <-ctx.Done():
		t.Fatal("the connection handler did not start")
	}
	readErr := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx)
		readErr <- err
	}()
	l.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after Close")
	}
	select {
	case <-handlerDone:
	default:
		t.Fatal("Run returned before the connection handler")
	}
	if err := <-readErr; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("sender got %v, want close 1001 from the listener's Close", err)
	}
	if l.Connected() {
		t.Fatal("Connected after Close")
	}
	if err := l.WaitConnected(ctx); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("WaitConnected after Close: %v", err)
	}
	waitFor(t, "the emulator to drop the listener", func() bool { return emu.ListenerCount("hc1") == 0 })
}

// TestEmulatorListenerLogsNoSecrets runs a listener through connect, token
// renewal, a dropped channel, an accept and an HTTP request with debug
// logging, and checks that no key, signature or token was logged.
func TestEmulatorListenerLogsNoSecrets(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.TokenGrace = time.Nanosecond })
	creds := emu.ListenerCredentials("hc1")
	log, buf := testlog.New(t)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: creds, TokenTTL: 2 * time.Second, RenewBefore: 1500 * time.Millisecond,
		Backoff: []time.Duration{0}, ConnHandler: echo,
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(t.Context()) }()
	ctx := waitCtx(t)
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a renewal logged", func() bool { return strings.Contains(buf.String(), "token renewed") })
	emu.DropConnections()
	waitFor(t, "a reconnect", func() bool { return l.Sessions() >= 2 && l.Connected() })
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ws.Write(ctx, websocket.MessageText, []byte("x"))
	ws.Read(ctx)
	ws.Close(websocket.StatusNormalClosure, "")
	resp, err := (&relay.HTTPSender{Credentials: emu.Credentials("hc1")}).Do(ctx, http.MethodGet, "", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	l.Close()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	testlog.AssertNoSecrets(t, buf.String(), creds.Key, creds.Key[:12], "sig=", "SharedAccessSignature")
}
