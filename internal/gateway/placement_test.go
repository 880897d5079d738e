package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

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

	e.startListenerWith(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "echo %s", b)
	}), func(c *relay.ListenerConfig) { c.TokenPlacement = relay.TokenAuto })

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
