package relay_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestPoolRenewsBeforeTokenExpiry(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	m := newPoolMetrics()
	// Tokens live 3-4 s (minted to the second); connections are replaced
	// 3 s before expiry, so within about a second of being dialled.
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) {
		c.TokenTTL, c.RenewBefore = 4*time.Second, 3*time.Second
	}, m)
	waitAllReady(t, p)
	sent := 0
	waitFor(t, "4 renewals", func() bool {
		if err := p.Send(t.Context(), seqMessage(sent, 100)); err != nil {
			t.Fatalf("send %d during renewal: %v", sent, err)
		}
		sent++
		return p.Stats().Renewals >= 4
	})
	pl.collect(t, sent)
	if got := pl.conns.Load(); got < 2+4 {
		t.Errorf("listener accepted %d connections, want at least 6", got)
	}
	// Replaced connections are closed with 1000 after flushing.
	select {
	case code := <-pl.closes:
		if code != int(websocket.StatusNormalClosure) {
			t.Errorf("replaced connection closed with %d, want 1000", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("no replaced connection was closed")
	}
	if got := m.get(func(m *poolMetrics) int { return len(m.closes) }); got != 0 {
		t.Errorf("connections lost during renewal: %v", m.closes)
	}
}
