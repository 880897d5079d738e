package emulator_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestExpiredControlChannelGets1008 opens two listeners whose tokens expire
// in about a second; one renews, the other does not. The unrenewed one is
// closed with 1008, the renewed one stays usable.
func TestExpiredControlChannelGets1008(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) { c.TokenGrace = time.Millisecond })
	c := s.Credentials("hc1")
	short := relay.CreateToken(c.ResourceURI(), c.KeyName, c.Key, time.Now().Add(1500*time.Millisecond))
	open := func(id string) *websocket.Conn {
		ws, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{ID: id}).String(), short, nil)
		if err != nil {
			t.Fatalf("listen: %v (%s)", err, status(resp))
		}
		return ws
	}
	stale, renewed := open("stale"), open("renewed")
	msg, _ := relay.EncodeControlMessage(&relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: token(t, c)}})
	if err := renewed.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	stale.SetReadDeadline(time.Now().Add(testTimeout))
	_, _, err := stale.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("unrenewed control channel: %v, want close 1008", err)
	}
	// The renewed channel (same original expiry) still takes senders.
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c),
		map[string][]string{"Microsoft-Relay-AllowedListeners": {"renewed"}})
	acceptAddr(t, dialer(nil), readAccept(t, renewed).Address, nil)
	if res := wait(t, sender); res.err != nil {
		t.Fatalf("sender via renewed listener: %v", res.err)
	}
}

func TestBadRenewTokenGets1008(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	c := s.Credentials("hc1")
	bad := relay.CreateToken(c.ResourceURI(), c.KeyName, "not-the-key", time.Now().Add(time.Hour))
	msg, _ := relay.EncodeControlMessage(&relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: bad}})
	if err := cc.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	cc.SetReadDeadline(time.Now().Add(testTimeout))
	_, _, err := cc.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("after a bad renewToken: %v, want close 1008", err)
	}
	testlog.WaitFor(t, "listener removed", func() bool { return s.ListenerCount("hc1") == 0 })
}
