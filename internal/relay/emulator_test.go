package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// testLog logs to the test's output until the test ends.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testlog.Output(t), &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "listener")
}

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
	l, err := relay.NewListener(cfg, testLog(t))
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

func TestEmulatorMessagesBothDirections(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	seen := make(chan *relay.ListenerConn, 1)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		seen <- c
		echo(ctx, c)
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{
		Suffix: "sub/path", Query: url.Values{"app": {"v 1"}}, Header: http.Header{"X-App": {"yes"}},
		Subprotocols: []string{"chat.v2", "chat.v1"},
	})
	c := <-seen
	if c.Path() != "/hc1/sub/path" || c.Query().Get("app") != "v 1" || c.Query().Has(relay.QueryAction) ||
		c.Header().Get("X-App") != "yes" || c.Header().Get(relay.HeaderAuthorization) != "" || c.Subprotocol() != "chat.v2" || c.ID() == "" {
		t.Errorf("listener saw path %q query %v header %v subprotocol %q", c.Path(), c.Query(), c.Header(), c.Subprotocol())
	}
	if ws.Subprotocol() != "chat.v2" {
		t.Errorf("sender subprotocol %q", ws.Subprotocol())
	}

	ctx := waitCtx(t)
	sizes := []int{1, 125, 126, 65535, 65536, 64<<10 + 1, 200 << 10, 1 << 20}
	type msg struct {
		typ  websocket.MessageType
		data []byte
	}
	var sent []msg
	for i, n := range sizes {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			sent = append(sent, msg{typ, payload(n, byte(i))})
		}
	}
	// Write everything first (from another goroutine, so that neither side
	// blocks on the other's buffers), then check order and content.
	errc := make(chan error, 1)
	go func() {
		for _, m := range sent {
			if err := ws.Write(ctx, m.typ, m.data); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, m := range sent {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Fatalf("message %d: got %v %d bytes, want %v %d bytes", i, typ, len(data), m.typ, len(m.data))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A normal close travels to the listener and back.
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestEmulatorListenerWritesFirst(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	big := payload(1<<20, 7)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		c.Write(ctx, relay.MessageText, []byte("hello"))
		c.Write(ctx, relay.MessageBinary, big)
		c.Read(ctx) // until the sender closes
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	if typ, data, err := ws.Read(ctx); err != nil || typ != websocket.MessageText || string(data) != "hello" {
		t.Fatalf("got %v %q %v", typ, data, err)
	}
	if typ, data, err := ws.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(data, big) {
		t.Fatalf("got %v %d bytes %v", typ, len(data), err)
	}
}

func TestEmulatorListenerCloseCodeReachesSender(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		c.Close(4001, "done here")
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	_, _, err := ws.Read(waitCtx(t))
	if websocket.CloseStatus(err) != 4001 {
		t.Fatalf("got %v, want close 4001", err)
	}
}

func TestEmulatorReject(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	var got atomic.Pointer[relay.AcceptRequest]
	runListener(t, emu, "hc1", relay.ListenerConfig{
		AcceptHandler: func(r *relay.AcceptRequest) (bool, int, string) {
			got.Store(r)
			switch r.Query.Get("mode") {
			case "teapot":
				return false, 418, "I'm a teapot & more"
			case "default":
				return false, 0, ""
			case "panic":
				panic("handler bug")
			}
			return true, 0, ""
		},
		ConnHandler: echo,
	})
	tests := []struct {
		mode   string
		code   int
		reason string
		want   error
	}{
		{"teapot", 418, "I'm a teapot & more", relay.ErrServerError},
		{"default", 400, "Rejected by user code", relay.ErrServerError},
		{"panic", 502, "The listener failed to handle the connection", relay.ErrServerError},
	}
	for _, tt := range tests {
		_, err := relay.Dial(waitCtx(t), emu.Credentials("hc1"), relay.DialOptions{Query: url.Values{"mode": {tt.mode}}, Header: http.Header{"X-Who": {"me"}}})
		var re *relay.StatusError
		if !errors.As(err, &re) || re.StatusCode != tt.code || re.Reason != tt.reason || !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %d %q", tt.mode, err, tt.code, tt.reason)
		}
	}
	if r := got.Load(); r == nil || r.Header.Get("X-Who") != "me" || r.RemoteAddr == "" || r.Path != "/hc1" {
		t.Errorf("AcceptRequest: %+v", r)
	}
	// The listener still accepts afterwards.
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	ws.Write(ctx, websocket.MessageText, []byte("x"))
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "x" {
		t.Fatalf("echo after rejects: %q %v", data, err)
	}
}

func TestEmulatorNoListener(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	_, err := relay.Dial(waitCtx(t), emu.Credentials("nobody-home"), relay.DialOptions{})
	var re *relay.StatusError
	if !errors.As(err, &re) || !errors.Is(err, relay.ErrNoListener) || !relay.Retryable(err) {
		t.Fatalf("got %v, want a retryable ErrNoListener", err)
	}
	if !strings.Contains(re.Reason, "TrackingId:") {
		t.Errorf("reason phrase %q lacks the tracking id", re.Reason)
	}
}

func TestEmulatorAuthErrors(t *testing.T) {
	t.Parallel()
	listenKey, sendKey := emulatortest.RandomKey(), emulatortest.RandomKey()
	emu := emulatortest.Start(t, func(c *emulator.Config) {
		c.Rules = append(c.Rules,
			emulator.Rule{Name: "listenonly", Key: listenKey, Rights: emulator.RightListen},
			emulator.Rule{Name: "sendonly", Key: sendKey, Rights: emulator.RightSend},
			emulator.Rule{Name: "hc2only", Key: sendKey, Rights: emulator.RightSend, Entity: "hc2"},
		)
	})
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo})
	good := emu.Credentials("hc1")
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	otherScope := relay.Credentials{Host: good.Host, EntityPath: "hc2", KeyName: "sendonly", Key: sendKey, Insecure: true}
	otherTok, _, _ := otherScope.Token(time.Now(), time.Hour)
	tests := []struct {
		name string
		c    relay.Credentials
		o    relay.DialOptions
		want error
	}{
		{"wrong key", relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: good.KeyName, Key: emulatortest.RandomKey(), Insecure: true}, relay.DialOptions{}, relay.ErrUnauthorized},
		{"unknown key name", relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "nobody", Key: sendKey, Insecure: true}, relay.DialOptions{}, relay.ErrUnauthorized},
		{"expired", good, relay.DialOptions{Now: past}, relay.ErrUnauthorized},
		{"expired in query", good, relay.DialOptions{Now: past, TokenInQuery: true}, relay.ErrUnauthorized},
		{"no token", relay.Credentials{Host: good.Host, EntityPath: "hc1", Insecure: true}, relay.DialOptions{}, relay.ErrUnauthorized},
		{"wrong scope", relay.Credentials{Host: good.Host, EntityPath: "hc1", SharedAccessSignature: otherTok, Insecure: true}, relay.DialOptions{}, relay.ErrForbidden},
		{"entity rule elsewhere", relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "hc2only", Key: sendKey, Insecure: true}, relay.DialOptions{}, relay.ErrUnauthorized},
		{"listen right only", relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "listenonly", Key: listenKey, Insecure: true}, relay.DialOptions{}, relay.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, _, _ := tt.c.Token(time.Now(), 0)
			_, err := relay.Dial(waitCtx(t), tt.c, tt.o)
			var re *relay.StatusError
			if !errors.As(err, &re) || !errors.Is(err, tt.want) || relay.Retryable(err) {
				t.Fatalf("got %v, want a non-retryable %v", err, tt.want)
			}
			for _, secret := range []string{tt.c.Key, sigOf2(tok)} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret: %v", err)
				}
			}
		})
	}

	// A listener with the send-only rule is refused at once, no retry loop.
	t.Run("listener wrong right", func(t *testing.T) {
		t.Parallel()
		c := relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "sendonly", Key: sendKey, Insecure: true}
		_, errc := startListener(t, emu, "hc1", relay.ListenerConfig{Credentials: c, ConnHandler: echo})
		select {
		case err := <-errc:
			if !errors.Is(err, relay.ErrForbidden) {
				t.Fatalf("got %v, want ErrForbidden", err)
			}
		case <-waitCtx(t).Done():
			t.Fatal("Run did not return")
		}
	})
	t.Run("listener wrong key", func(t *testing.T) {
		t.Parallel()
		c := relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "listenonly", Key: sendKey, Insecure: true}
		_, errc := startListener(t, emu, "hc1", relay.ListenerConfig{Credentials: c, ConnHandler: echo})
		select {
		case err := <-errc:
			if !errors.Is(err, relay.ErrUnauthorized) || strings.Contains(err.Error(), sendKey) {
				t.Fatalf("got %v, want ErrUnauthorized", err)
			}
		case <-waitCtx(t).Done():
			t.Fatal("Run did not return")
		}
	})
}

func sigOf2(tok string) string {
	if tok == "" {
		return ""
	}
	return sigOf(tok)
}

func TestEmulatorListenerNotFound(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.AutoCreate = false })
	_, errc := startListener(t, emu, "missing", relay.ListenerConfig{ConnHandler: echo})
	select {
	case err := <-errc:
		if !errors.Is(err, relay.ErrEntityNotFound) {
			t.Fatalf("got %v, want ErrEntityNotFound", err)
		}
	case <-waitCtx(t).Done():
		t.Fatal("Run did not return on 404")
	}
}

func TestEmulatorListenerCap(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	for range 25 {
		runListener(t, emu, "capped", relay.ListenerConfig{ConnHandler: echo})
	}
	if n := emu.ListenerCount("capped"); n != 25 {
		t.Fatalf("ListenerCount = %d, want 25", n)
	}
	_, errc := startListener(t, emu, "capped", relay.ListenerConfig{ConnHandler: echo})
	select {
	case err := <-errc:
		if !errors.Is(err, relay.ErrForbidden) || !strings.Contains(err.Error(), "listeners") {
			t.Fatalf("26th listener: got %v, want ErrForbidden naming the quota", err)
		}
	case <-waitCtx(t).Done():
		t.Fatal("26th listener's Run did not return")
	}
}

func TestEmulatorSendersSpreadOverListeners(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	const listeners, senders = 3, 30
	var counts [listeners]atomic.Int32
	for i := range listeners {
		runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			counts[i].Add(1)
			c.Write(ctx, relay.MessageText, []byte(fmt.Sprint(i)))
			c.Read(ctx)
		}})
	}
	for range senders {
		ws := dial(t, emu, "hc1", relay.DialOptions{})
		if _, _, err := ws.Read(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	}
	total := 0
	for i := range listeners {
		n := int(counts[i].Load())
		total += n
		if n == 0 {
			t.Errorf("listener %d got no sender", i)
		}
	}
	if total != senders {
		t.Errorf("listeners got %d senders, want %d", total, senders)
	}
}

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

func TestEmulatorTLS(t *testing.T) {
	t.Parallel()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.TLS = &emulator.TLSConfig{CAFile: caFile} })
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in the file")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if emu.Credentials("hc1").Insecure {
		t.Fatal("TLS emulator gave insecure credentials")
	}
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo, HTTPClient: client})
	ws := dial(t, emu, "hc1", relay.DialOptions{HTTPClient: client})
	ctx := waitCtx(t)
	ws.Write(ctx, websocket.MessageText, []byte("over tls"))
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "over tls" {
		t.Fatalf("echo: %q %v", data, err)
	}
	// Without the CA the handshake fails, and the error says why.
	_, err = relay.Dial(ctx, emu.Credentials("hc1"), relay.DialOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a certificate error", err)
	}
}

func TestEmulatorListenerCloseStopsHandlers(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	handlerDone := make(chan struct{})
	l, errc := startListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		defer close(handlerDone)
		<-ctx.Done()
	}})
	if err := l.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
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

func TestEmulatorDialContextBoundsHandshakeOnly(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo})
	dctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	ws, err := relay.Dial(dctx, emu.Credentials("hc1"), relay.DialOptions{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ctx := waitCtx(t)
	if err := ws.Write(ctx, websocket.MessageText, []byte("after cancel")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "after cancel" {
		t.Fatalf("echo after the dial ctx was cancelled: %q %v", data, err)
	}
}

func TestEmulatorConnHandlerPanic(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		if _, data, _ := c.Read(ctx); string(data) == "panic" {
			panic("handler bug")
		}
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	ws.Write(ctx, websocket.MessageText, []byte("panic"))
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Fatalf("got %v, want close 1011", err)
	}
	// The listener survives.
	ws = dial(t, emu, "hc1", relay.DialOptions{})
	ws.Write(ctx, websocket.MessageText, []byte("fine"))
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("got %v, want close 1000 when the handler returns", err)
	}
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
