package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gws "github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// startQueryOnly runs an emulator that accepts the SAS token only in the
// sb-hc-token query parameter, logging into log.
func startQueryOnly(t *testing.T, log *slog.Logger) *emulator.Server {
	t.Helper()
	return emulatortest.StartLogged(t, log.With("component", "emulator"), func(c *emulator.Config) { c.QueryTokenOnly = true })
}

// assertNoToken fails when logs (or an error text) show the key or any
// part of a SAS token.
func assertNoToken(t *testing.T, logs string, c relay.Credentials) {
	t.Helper()
	testlog.AssertNoSecrets(t, logs, c.Key, c.Key[:12], "sig=", "sig%3D", "SharedAccessSignature")
}

// TestTokenPlacementEveryRole runs every client role against a relay that
// accepts the token only in the query: the header form gets 401, query and
// auto (header, then query after the 401) work, and no token reaches a log
// line or an error.
func TestTokenPlacementEveryRole(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		placement relay.TokenPlacement
		wantOK    bool
	}{
		{relay.TokenInHeader, false},
		{relay.TokenInQuery, true},
		{relay.TokenAuto, true},
	} {
		t.Run(string(tt.placement), func(t *testing.T) {
			t.Parallel()
			log, buf := testlog.New(t)
			emu := startQueryOnly(t, log)
			creds := emu.Credentials("hc1")
			var errs []string
			t.Cleanup(func() { assertNoToken(t, buf.String()+strings.Join(errs, "\n"), creds) })

			// Listener.
			got := make(chan []byte, 10)
			l, err := relay.NewListener(relay.ListenerConfig{
				Credentials:    emu.ListenerCredentials("hc1"),
				TokenPlacement: tt.placement,
				Backoff:        []time.Duration{0},
				ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
					for {
						_, data, err := c.Read(ctx)
						if err != nil {
							return
						}
						got <- data
						if err := c.Write(ctx, relay.MessageText, data); err != nil {
							return
						}
					}
				},
				HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					w.Write(append([]byte("echo:"), body...))
				}),
			}, log.With("component", "listener"))
			if err != nil {
				t.Fatal(err)
			}
			runErr := make(chan error, 1)
			ctx := waitCtx(t)
			go func() { runErr <- l.Run(ctx) }()
			t.Cleanup(func() { l.Close() })
			if !tt.wantOK {
				err := <-runErr
				if !errors.Is(err, relay.ErrUnauthorized) {
					t.Fatalf("listener Run: got %v, want ErrUnauthorized", err)
				}
				errs = append(errs, err.Error())
				// The senders need a listener to reach; start one with the
				// query form.
				runListener(t, emu, "hc1", relay.ListenerConfig{TokenPlacement: relay.TokenInQuery, ConnHandler: echo})
			} else if err := l.WaitConnected(ctx); err != nil {
				t.Fatalf("listener: %v (Run: %v)", err, <-runErr)
			}

			// Sender (Dial).
			ws, err := relay.Dial(ctx, creds, relay.DialOptions{TokenPlacement: tt.placement})
			if tt.wantOK != (err == nil) || (err != nil && !errors.Is(err, relay.ErrUnauthorized)) {
				t.Fatalf("Dial: %v", err)
			}
			if err != nil {
				errs = append(errs, err.Error())
			} else {
				ws.Write(ctx, websocket.MessageText, []byte("dialled"))
				if _, data, err := ws.Read(ctx); err != nil || string(data) != "dialled" {
					t.Fatalf("Dial echo: %q %v", data, err)
				}
				ws.Close(websocket.StatusNormalClosure, "")
			}

			// Pool.
			p, err := relay.NewPool(relay.PoolConfig{Credentials: creds, Size: 2, TokenPlacement: tt.placement,
				Backoff: []time.Duration{0, 10 * time.Millisecond}}, log.With("component", "pool"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close(context.Background()) })
			if tt.wantOK {
				if err := p.WaitReady(ctx); err != nil {
					t.Fatalf("pool: %v", err)
				}
				if err := p.Send(ctx, relay.Message{ID: "m1", Type: relay.MessageText, Data: []byte("pooled")}); err != nil {
					t.Fatalf("pool Send: %v", err)
				}
			} else {
				waitFor(t, "the pool's Send to fail with ErrUnauthorized", func() bool {
					err := p.Send(ctx, relay.Message{ID: "m1", Type: relay.MessageText, Data: []byte("pooled")})
					if errors.Is(err, relay.ErrUnauthorized) {
						errs = append(errs, err.Error())
						return true
					}
					return false
				})
			}

			// HTTP sender, twice (auto learns the query form).
			hs := &relay.HTTPSender{Credentials: creds, TokenPlacement: tt.placement}
			for range 2 {
				resp, err := hs.Do(ctx, http.MethodPost, "", nil, nil, bytes.NewReader([]byte("req")))
				if err != nil {
					t.Fatalf("HTTPSender: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case tt.wantOK && (resp.StatusCode != http.StatusOK || string(body) != "echo:req" || !relay.FromListener(resp)):
					t.Fatalf("HTTPSender: %d %q", resp.StatusCode, body)
				case !tt.wantOK && (resp.StatusCode != http.StatusUnauthorized || relay.FromListener(resp)):
					t.Fatalf("HTTPSender: %d %q, want the relay's 401", resp.StatusCode, body)
				}
			}
			for tt.wantOK {
				select {
				case b := <-got:
					if string(b) == "pooled" {
						return
					}
				case <-ctx.Done():
					t.Fatal("the listener did not get the pooled message")
				}
			}
		})
	}
}

// TestTokenInQueryNeverInErrors checks that a dial error with the token in
// the URL, from the relay and from the network, does not quote it.
func TestTokenInQueryNeverInErrors(t *testing.T) {
	t.Parallel()
	log, buf := testlog.New(t)
	emu := startQueryOnly(t, log)
	creds := emu.Credentials("nobody-listens")
	ctx := waitCtx(t)
	_, err1 := relay.Dial(ctx, creds, relay.DialOptions{TokenPlacement: relay.TokenInQuery})
	if !errors.Is(err1, relay.ErrNoListener) {
		t.Fatalf("got %v, want ErrNoListener", err1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := creds
	dead.Host = ln.Addr().String()
	ln.Close()
	_, err2 := relay.Dial(ctx, dead, relay.DialOptions{TokenPlacement: relay.TokenAuto})
	_, err3 := (&relay.HTTPSender{Credentials: dead, TokenPlacement: relay.TokenInQuery}).Do(ctx, http.MethodGet, "", nil, nil, nil)
	if err2 == nil || err3 == nil {
		t.Fatalf("dials to a closed port succeeded: %v %v", err2, err3)
	}
	assertNoToken(t, buf.String()+err1.Error()+err2.Error()+err3.Error(), creds)
}

// TestListenerConnHalfClose: a sender closes its side with 1000 (like
// .NET's Shutdown) and then reads; the listener still writes its reply
// after seeing the close, and then closes with its own code.
func TestListenerConnHalfClose(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	handlerErr := make(chan error, 1)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		var got [][]byte
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
					handlerErr <- err
					return
				}
				break
			}
			got = append(got, data)
		}
		for _, d := range got {
			if err := c.Write(ctx, relay.MessageText, append([]byte("reply:"), d...)); err != nil {
				handlerErr <- err
				return
			}
		}
		handlerErr <- c.Close(websocket.StatusCode(4000), "done")
	}})

	creds := emu.Credentials("hc1")
	tok, _, err := creds.Token(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u := creds.WebSocketURL(relay.ActionConnect, relay.URLOptions{})
	ctx := waitCtx(t)
	ws, resp, err := gws.DefaultDialer.DialContext(ctx, u.String(), http.Header{relay.HeaderAuthorization: {tok}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer ws.Close()
	ws.SetCloseHandler(func(int, string) error { return nil }) // keep reading after the listener's close
	for _, m := range []string{"one", "two"} {
		if err := ws.WriteMessage(gws.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.WriteControl(gws.CloseMessage, gws.FormatCloseMessage(gws.CloseNormalClosure, "Shutdown"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	dl, _ := ctx.Deadline()
	ws.SetReadDeadline(dl)
	for _, want := range []string{"reply:one", "reply:two"} {
		_, data, err := ws.ReadMessage()
		if err != nil || string(data) != want {
			t.Fatalf("after the sender's close: got %q, %v; want %q", data, err, want)
		}
	}
	_, _, err = ws.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "done" {
		t.Fatalf("got %v, want the listener's close 4000 done", err)
	}
	if err := <-handlerErr; err != nil {
		t.Fatalf("listener: %v", err)
	}
}

// TestListenerConnCloseWaitsForPeer: when the listener closes first, the
// sender gets its close frame, and the listener's Close returns once the
// sender has answered.
func TestListenerConnCloseWaitsForPeer(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	closed := make(chan error, 1)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		closed <- c.Close(websocket.StatusGoingAway, "bye")
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("sender got %v, want 1001", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestListenerConnReadCancelKeepsWriting: a cancelled Read ends reading
// only; the listener can still write and close with its own code.
func TestListenerConnReadCancelKeepsWriting(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	handlerErr := make(chan error, 1)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		rctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := c.Read(rctx); !errors.Is(err, context.Canceled) {
			handlerErr <- fmt.Errorf("cancelled Read: %v", err)
			return
		}
		if err := c.Write(ctx, relay.MessageText, []byte("still here")); err != nil {
			handlerErr <- err
			return
		}
		handlerErr <- c.Close(websocket.StatusCode(4001), "bye")
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "still here" {
		t.Fatalf("got %q %v", data, err)
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != 4001 {
		t.Fatalf("got %v, want close 4001", err)
	}
	if err := <-handlerErr; err != nil {
		t.Fatal(err)
	}
}
