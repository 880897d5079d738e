package emulator_test

import (
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// recMetrics records what the emulator reports.
type recMetrics struct {
	mu                 sync.Mutex
	listeners, pending int
	messages           int
	bytes              int64
	rejected           map[string]int
}

func (m *recMetrics) ListenersChanged(d int) { m.mu.Lock(); m.listeners += d; m.mu.Unlock() }
func (m *recMetrics) PendingChanged(d int)   { m.mu.Lock(); m.pending += d; m.mu.Unlock() }
func (m *recMetrics) MessageRelayed(n int64) {
	m.mu.Lock()
	m.messages++
	m.bytes += n
	m.mu.Unlock()
}
func (m *recMetrics) Rejected(r string) { m.mu.Lock(); m.rejected[r]++; m.mu.Unlock() }

func (m *recMetrics) snapshot() recMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := map[string]int{}
	for k, v := range m.rejected {
		cp[k] = v
	}
	return recMetrics{listeners: m.listeners, pending: m.pending, messages: m.messages, bytes: m.bytes, rejected: cp}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := &recMetrics{rejected: map[string]int{}}
	s, err := emulator.New(emulator.Config{
		Rules:      []emulator.Rule{{Name: "root", Key: emulatortest.RandomKey(), Rights: emulator.RightManage}},
		AutoCreate: true,
	}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(ctxT(t)) })
	c := s.Credentials("hc1")
	// No listener yet: one rejection.
	dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	acc := readAccept(t, cc)
	if got := m.snapshot().pending; got != 1 {
		t.Errorf("pending while waiting = %d, want 1", got)
	}
	lws := acceptAddr(t, dialer(nil), acc.Address, nil)
	res := wait(t, sender)
	if res.err != nil {
		t.Fatal(res.err)
	}
	res.ws.WriteMessage(websocket.BinaryMessage, []byte("12345"))
	lws.ReadMessage()
	// The count follows the write, so the reader may see the message first.
	testlog.WaitFor(t, "message counted", func() bool { return m.snapshot().messages == 1 })
	// Reject one sender: counted once.
	sender = connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	dialWS(t, dialer(nil), relay.WithRejectStatus(readAccept(t, cc).Address, 403, "no"), "", nil)
	wait(t, sender)

	got := m.snapshot()
	if got.listeners != 1 || got.messages != 1 || got.bytes != 5 || got.pending != 0 {
		t.Errorf("listeners=%d messages=%d bytes=%d pending=%d, want 1 1 5 0", got.listeners, got.messages, got.bytes, got.pending)
	}
	if got.rejected["no_listener"] != 1 || got.rejected["rejected"] != 1 || len(got.rejected) != 2 {
		t.Errorf("rejections = %v, want no_listener:1 rejected:1", got.rejected)
	}
	cc.Close()
	testlog.WaitFor(t, "listener gauge back to 0", func() bool { return m.snapshot().listeners == 0 })
}
