package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestGatewayTokenPlacementAuto: against a relay that accepts the token
// only in the query, a gateway with GATEWAY_TOKEN_PLACEMENT=auto (and a
// listener with auto) sends over the pool and in request mode, and no
// token reaches the logs.
func TestGatewayTokenPlacementAuto(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	emu := emulatortest.StartLogged(t, e.log.With("component", "query-only-emulator"), func(c *emulator.Config) { c.QueryTokenOnly = true })
	e.emu = emu

	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials:    emu.ListenerCredentials(entity),
		TokenPlacement: relay.TokenAuto,
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				e.recv <- frame{typ, data}
			}
		},
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "echo %s", b)
		}),
	}, e.log.With("component", "test-listener"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	t.Cleanup(func() { l.Close(); <-done })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatalf("listener with auto placement: %v", err)
	}

	e.startGateway(func(c *config.Gateway) { c.TokenPlacement = string(relay.TokenAuto) })
	e.waitReady()
	if resp, b := e.do("POST", "/messages", "text/plain", []byte("over the pool")); resp.StatusCode != 202 {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "over the pool" {
		t.Fatalf("listener got %q", f.data)
	}
	resp, b := e.do("POST", "/messages?delivery=request", "text/plain", []byte("in request mode"))
	var d deliveredDoc
	json.Unmarshal(b, &d)
	if resp.StatusCode != 200 || d.Listener.Body != "echo in request mode" {
		t.Fatalf("delivery=request: %d %s", resp.StatusCode, b)
	}
	key := emu.Credentials(entity).Key
	testlog.AssertNoSecrets(t, e.logs.String(), key, key[:12], "sig=", "sig%3D", "SharedAccessSignature")
}
