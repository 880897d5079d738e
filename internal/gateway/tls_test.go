package gateway

import (
	"path/filepath"
	"testing"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
)

// TestE2ERelayCAFile runs the emulator in TLS mode with a generated CA and
// trusts it through GATEWAY_RELAY_CA_FILE (gateway: pooled wss:// and
// https:// request mode) and LISTENER_RELAY_CA_FILE (the listener's
// control channel and rendezvous).
func TestE2ERelayCAFile(t *testing.T) {
	t.Parallel()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	e := newE2E(t, func(c *emulator.Config) { c.TLS = &emulator.TLSConfig{CAFile: caFile} })
	lc := config.Listener{Relay: config.Relay{RelayCAFile: caFile}}
	client, err := lc.RelayHTTPClient()
	if err != nil || client == nil {
		t.Fatalf("listener RelayHTTPClient: %v, %v", client, err)
	}
	e.listenerClient = client
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.Emulator = false; c.RelayCAFile = caFile })
	if e.emu.Credentials(entity).Insecure {
		t.Fatal("the emulator's credentials are not TLS")
	}
	e.waitReady()

	resp, b := e.do("POST", "/messages", "text/plain", []byte("over tls"))
	if resp.StatusCode != 202 {
		t.Fatalf("POST /messages over wss: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "over tls" {
		t.Errorf("listener got %q", f.data)
	}
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("request over tls"))
	if resp.StatusCode >= 300 {
		t.Errorf("POST /messages?delivery=request over https: %d %s", resp.StatusCode, b)
	}
}
