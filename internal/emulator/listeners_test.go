package emulator_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestListenerCapAndSpread(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	var ccs []*websocket.Conn
	for i := range emulator.DefaultMaxListeners {
		ccs = append(ccs, listen(t, s, "hc1", relay.URLOptions{ID: fmt.Sprintf("L%d", i)}))
	}
	c := s.Credentials("hc1")
	_, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), token(t, c), nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("26th listener: %v (%s), want 403", err, status(resp))
	}
	if n := s.ListenerCount("hc1"); n != 25 {
		t.Errorf("ListenerCount = %d, want 25", n)
	}

	// Senders are spread over listeners; Allowed/DisallowedListeners pin them.
	got := make(chan int, 64)
	for i, cc := range ccs {
		go func() {
			for {
				cc.SetReadDeadline(time.Now().Add(testTimeout))
				_, data, err := cc.ReadMessage()
				if err != nil {
					return
				}
				m, err := relay.DecodeControlMessage(data)
				if err != nil || m.Accept == nil {
					continue
				}
				got <- i
				ws, _, err := dialer(nil).Dial(relay.WithRejectStatus(m.Accept.Address, 404, "done"), nil)
				if err == nil {
					ws.Close()
				}
			}
		}()
	}
	seen := map[int]bool{}
	for range 40 {
		_, resp, _ := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
		if resp == nil || resp.StatusCode != 404 || resp.Status != "404 done" {
			t.Fatalf("sender: %s, want the listener's 404 done", status(resp))
		}
		seen[wait(t, got)] = true
	}
	if len(seen) < 5 {
		t.Errorf("40 senders reached only %d of 25 listeners", len(seen))
	}
	for range 5 {
		_, resp, _ := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c),
			http.Header{"Microsoft-Relay-AllowedListeners": {"l7, L9"}, "Microsoft-Relay-DisallowedListeners": {"L9"}})
		if resp == nil || resp.Status != "404 done" {
			t.Fatalf("sender: %s", status(resp))
		}
		if i := wait(t, got); i != 7 {
			t.Errorf("AllowedListeners L7,L9 minus L9 reached listener %d", i)
		}
	}
	_, resp, _ = dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c),
		http.Header{"Microsoft-Relay-AllowedListeners": {"nobody"}})
	if resp == nil || resp.StatusCode != 404 || !hasReason(resp, "AllowedListeners") {
		t.Errorf("no allowed listener: %s", status(resp))
	}
}

func TestDropConnectionsAndReconnect(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	s.DropConnections()
	cc.SetReadDeadline(time.Now().Add(testTimeout))
	if _, _, err := cc.ReadMessage(); err == nil {
		t.Fatal("control channel survived DropConnections")
	}
	testlog.WaitFor(t, "listener removed", func() bool { return s.ListenerCount("hc1") == 0 })
	listen(t, s, "hc1", relay.URLOptions{})
	if n := s.ListenerCount("hc1"); n != 1 {
		t.Fatalf("ListenerCount after reconnect = %d", n)
	}
}
