package relay_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

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
	if !errors.As(err, &re) || !errors.Is(err, relay.ErrNoListener) || !retryable(err) {
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
			if !errors.As(err, &re) || !errors.Is(err, tt.want) || retryable(err) {
				t.Fatalf("got %v, want a non-retryable %v", err, tt.want)
			}
			for _, secret := range []string{tt.c.Key, testlog.Signature(tok)} {
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
		if err := runError(t, errc); !errors.Is(err, relay.ErrForbidden) {
			t.Fatalf("got %v, want ErrForbidden", err)
		}
	})
	t.Run("listener wrong key", func(t *testing.T) {
		t.Parallel()
		c := relay.Credentials{Host: good.Host, EntityPath: "hc1", KeyName: "listenonly", Key: sendKey, Insecure: true}
		_, errc := startListener(t, emu, "hc1", relay.ListenerConfig{Credentials: c, ConnHandler: echo})
		if err := runError(t, errc); !errors.Is(err, relay.ErrUnauthorized) || strings.Contains(err.Error(), sendKey) {
			t.Fatalf("got %v, want ErrUnauthorized", err)
		}
	})
}

func TestEmulatorListenerNotFound(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.AutoCreate = false })
	_, errc := startListener(t, emu, "missing", relay.ListenerConfig{ConnHandler: echo})
	if err := runError(t, errc); !errors.Is(err, relay.ErrEntityNotFound) {
		t.Fatalf("got %v, want ErrEntityNotFound", err)
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
	if err := runError(t, errc); !errors.Is(err, relay.ErrForbidden) || !strings.Contains(err.Error(), "listeners") {
		t.Fatalf("26th listener: got %v, want ErrForbidden naming the quota", err)
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
