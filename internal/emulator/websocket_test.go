package emulator_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestAcceptRelaysMessagesAndCloseCodes(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	if n := s.ListenerCount("HC1"); n != 1 {
		t.Fatalf("ListenerCount = %d, want 1", n)
	}
	c := s.Credentials("hc1")
	u := c.WebSocketURL(relay.ActionConnect, relay.URLOptions{Suffix: "sub/path", Query: url.Values{"foo": {"bar"}}, ID: "abc123"})
	d := dialer(nil)
	d.Subprotocols = []string{"chat.v1", "chat.v2"}
	sender := connectAsync(t, d, u.String(), token(t, c), http.Header{"X-App": {"a", "b"}})

	acc := readAccept(t, cc)
	au, err := url.Parse(acc.Address)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := au.EscapedPath(), "/$hc/hc1/sub/path"; got != want {
		t.Errorf("accept path = %q, want %q", got, want)
	}
	q := au.Query()
	if q.Get("foo") != "bar" || q.Get("sb-hc-action") != "accept" || q.Get("sb-hc-id") != acc.ID || q.Get("sb-hc-token") != "" {
		t.Errorf("accept query = %q", au.RawQuery)
	}
	if !strings.HasPrefix(acc.ID, "abc123_G") {
		t.Errorf("accept id = %q, want abc123_G…", acc.ID)
	}
	for _, h := range []string{"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Host"} {
		if acc.ConnectHeaders[h] == "" {
			t.Errorf("connectHeaders lacks %s: %v", h, acc.ConnectHeaders)
		}
	}
	if got := acc.ConnectHeaders["X-App"]; got != "a, b" {
		t.Errorf("X-App = %q, want %q", got, "a, b")
	}
	for k := range acc.ConnectHeaders {
		if strings.EqualFold(k, relay.HeaderAuthorization) {
			t.Errorf("connectHeaders leaks %s", k)
		}
	}
	if acc.RemoteEndpoint.Address != "127.0.0.1" || acc.RemoteEndpoint.Port == 0 {
		t.Errorf("remoteEndpoint = %+v", acc.RemoteEndpoint)
	}

	ld := dialer(nil)
	ld.Subprotocols = []string{"chat.v2"} // the listener picks one
	lws := acceptAddr(t, ld, acc.Address, nil)
	res := wait(t, sender)
	if res.err != nil {
		t.Fatalf("sender: %v (%s)", res.err, status(res.resp))
	}
	sws := res.ws
	t.Cleanup(func() { sws.Close() })
	if sws.Subprotocol() != "chat.v2" || lws.Subprotocol() != "chat.v2" {
		t.Errorf("subprotocols sender=%q listener=%q, want chat.v2", sws.Subprotocol(), lws.Subprotocol())
	}
	if ext := res.resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("extensions negotiated: %q", ext)
	}

	// Messages keep type and boundaries, both ways; sizes 1 B … 1 MiB.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	msgs := []struct {
		mt   int
		data []byte
	}{{websocket.TextMessage, []byte("h")}, {websocket.BinaryMessage, []byte{0, 1, 2}}, {websocket.BinaryMessage, big}, {websocket.TextMessage, []byte("héllo")}, {websocket.BinaryMessage, []byte{}}}
	for _, dir := range []struct {
		name     string
		from, to *websocket.Conn
	}{{"sender→listener", sws, lws}, {"listener→sender", lws, sws}} {
		errc := make(chan error, 1)
		go func() {
			for _, m := range msgs {
				if err := dir.from.WriteMessage(m.mt, m.data); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		dir.to.SetReadDeadline(time.Now().Add(testTimeout))
		for i, m := range msgs {
			mt, data, err := dir.to.ReadMessage()
			if err != nil {
				t.Fatalf("%s: read %d: %v", dir.name, i, err)
			}
			if mt != m.mt || !bytes.Equal(data, m.data) {
				t.Fatalf("%s: message %d: got type %d len %d, want type %d len %d", dir.name, i, mt, len(data), m.mt, len(m.data))
			}
		}
		if err := wait(t, errc); err != nil {
			t.Fatal(err)
		}
	}

	// Ping is answered per hop.
	pong := make(chan string, 1)
	sws.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := sws.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	// Half-close: the sender closes; the listener sees the code and reason
	// and can still send before closing with its own code.
	lws.SetCloseHandler(func(int, string) error { return nil })
	sws.SetCloseHandler(func(int, string) error { return nil })
	readErr := make(chan error, 1)
	readMsg := make(chan string, 1)
	go func() {
		for {
			_, data, err := sws.ReadMessage() // also runs the pong handler
			if err != nil {
				readErr <- err
				return
			}
			readMsg <- string(data)
		}
	}()
	if got := wait(t, pong); got != "p1" {
		t.Errorf("pong = %q", got)
	}
	if err := sws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "sender done"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	lws.SetReadDeadline(time.Now().Add(testTimeout))
	_, _, err = lws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "sender done" {
		t.Fatalf("listener read after sender close: %v, want close 4000 \"sender done\"", err)
	}
	if err := lws.WriteMessage(websocket.TextMessage, []byte("after close")); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, readMsg); got != "after close" {
		t.Errorf("sender got %q after half-close", got)
	}
	lws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "listener done"), time.Now().Add(time.Second))
	err = wait(t, readErr)
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "listener done" {
		t.Fatalf("sender read after listener close: %v, want close 4001", err)
	}
}

func TestRejectGivesSenderStatusAndListener410(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	c := s.Credentials("hc1")
	for _, tt := range []struct {
		name   string
		reject func(addr string) string
	}{
		{"prefixed", func(a string) string { return relay.WithRejectStatus(a, 403, "Go away, please") }},
		{"unprefixed", func(a string) string { return a + "&statusCode=403&statusDescription=Go+away%2C+please" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
			acc := readAccept(t, cc)
			_, resp, err := dialWS(t, dialer(nil), tt.reject(acc.Address), "", nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusGone {
				t.Fatalf("listener reject: %v (%s), want 410", err, status(resp))
			}
			res := wait(t, sender)
			if res.err == nil || res.resp == nil || res.resp.StatusCode != 403 || res.resp.Status != "403 Go away, please" {
				t.Fatalf("sender got %v (%s), want \"403 Go away, please\"", res.err, status(res.resp))
			}
			// The address is used up.
			_, resp, _ = dialWS(t, dialer(nil), acc.Address, "", nil)
			if resp == nil || resp.StatusCode != 403 || !hasReason(resp, "URL not valid") {
				t.Errorf("reused address: %s, want 403 URL not valid", status(resp))
			}
		})
	}
}

func TestAcceptAddressSingleUseAndTimeout(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) { c.AcceptTimeout = 200 * time.Millisecond })
	cc := listen(t, s, "hc1", relay.URLOptions{})
	c := s.Credentials("hc1")
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	acc := readAccept(t, cc)
	res := wait(t, sender) // nobody accepts
	if res.resp == nil || res.resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("sender: %v (%s), want 504", res.err, status(res.resp))
	}
	_, resp, _ := dialWS(t, dialer(nil), acc.Address, "", nil)
	if resp == nil || resp.StatusCode != 403 || !hasReason(resp, "URL not valid") {
		t.Fatalf("expired address: %s, want 403 URL not valid", status(resp))
	}
	_, resp, _ = dialWS(t, dialer(nil), strings.Replace(acc.Address, acc.ID, "nope", 1), "", nil)
	if resp == nil || resp.StatusCode != 403 {
		t.Fatalf("unknown id: %s, want 403", status(resp))
	}
}

func TestAbruptLossAbortsOtherLeg(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	c := s.Credentials("hc1")
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	lws := acceptAddr(t, dialer(nil), readAccept(t, cc).Address, nil)
	res := wait(t, sender)
	if res.err != nil {
		t.Fatal(res.err)
	}
	lws.NetConn().Close() // the listener vanishes without a close frame
	res.ws.SetReadDeadline(time.Now().Add(testTimeout))
	_, _, err := res.ws.ReadMessage()
	var ce *websocket.CloseError
	if err == nil || errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		t.Fatalf("sender read = %v, want an abrupt loss (no close frame)", err)
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("sender was not aborted: %v", err)
	}
}
