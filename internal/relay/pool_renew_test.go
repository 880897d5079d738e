package relay_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

func TestPoolRenewsBeforeTokenExpiry(t *testing.T) {
	t.Parallel()
	// A fake clock over in-memory connections: renewals follow token
	// lifetimes exactly, however loaded the machine, in no real time.
	synctest.Test(t, func(t *testing.T) {
		emu, client := serveMemEmulator(t)
		lc, sc := emu.ListenerCredentials("hc1"), emu.Credentials("hc1")
		lc.Host, sc.Host = memHost, memHost
		pl := startPoolListenerOn(t, lc, client, nil)
		m := newPoolMetrics()
		// Tokens live 3-4 s (minted to the second); connections are
		// replaced 3 s before expiry, so within about a second of being
		// dialled.
		p := newTestPool(t, sc, func(c *relay.PoolConfig) {
			c.TokenTTL, c.RenewBefore = 4*time.Second, 3*time.Second
			c.HTTPClient = client
		}, m)
		waitAllReady(t, p)
		sent := 0
		for p.Stats().Renewals < 4 {
			if err := p.Send(t.Context(), seqMessage(sent, 100)); err != nil {
				t.Fatalf("send %d during renewal: %v", sent, err)
			}
			sent++
			time.Sleep(50 * time.Millisecond)
		}
		pl.collect(t, sent)
		if got := pl.conns.Load(); got < 2+4 {
			t.Errorf("listener accepted %d connections, want at least 6", got)
		}
		// Replaced connections are closed with 1000 after flushing.
		if code := <-pl.closes; code != int(websocket.StatusNormalClosure) {
			t.Errorf("replaced connection closed with %d, want 1000", code)
		}
		if got := m.get(func(m *poolMetrics) int { return len(m.closes) }); got != 0 {
			t.Errorf("connections lost during renewal: %v", m.closes)
		}
	})
}
