package emulator_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
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

func TestConnectErrors(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.AutoCreate = false
		c.Entities = []emulator.Entity{{Name: "hc1", RequiresClientAuthorization: true}, {Name: "other", RequiresClientAuthorization: true}}
		c.Rules = append(c.Rules,
			emulator.Rule{Name: "listenOnly", Key: emulatortest.RandomKey(), Rights: emulator.RightListen},
			emulator.Rule{Name: "sendOther", Key: emulatortest.RandomKey(), Rights: emulator.RightSend, Entity: "other"},
		)
	})
	good := s.Credentials("hc1")
	expired := relay.CreateToken(good.ResourceURI(), good.KeyName, good.Key, time.Now().Add(-time.Minute))
	otherScope := relay.CreateToken("http://"+good.Host+"/other", good.KeyName, good.Key, time.Now().Add(time.Hour))
	badSig := relay.CreateToken(good.ResourceURI(), good.KeyName, "wrong-key", time.Now().Add(time.Hour))
	unknownKey := relay.CreateToken(good.ResourceURI(), "nobody", good.Key, time.Now().Add(time.Hour))
	tests := []struct {
		name, entity, token string
		code                int
		reason              string
	}{
		{"no token", "hc1", "", 401, "MissingToken"},
		{"malformed", "hc1", "Bearer xyz", 401, "MalformedToken"},
		{"bad signature", "hc1", badSig, 401, "The token has an invalid signature."},
		{"unknown key", "hc1", unknownKey, 401, "invalid signature"},
		{"expired", "hc1", expired, 401, "The token is expired."},
		{"wrong scope", "hc1", otherScope, 403, "InvalidAudience"},
		{"unknown entity", "nope", token(t, good), 404, "Endpoint does not exist."},
		{"no listener", "hc1", token(t, good), 404, "Endpoint does not exist."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			c.EntityPath = tt.entity
			_, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), tt.token, nil)
			if err == nil || resp == nil {
				t.Fatalf("dial: %v, want %d", err, tt.code)
			}
			if resp.StatusCode != tt.code || !strings.Contains(resp.Status, tt.reason) || !strings.Contains(resp.Status, "TrackingId:") ||
				!strings.Contains(resp.Status, "SystemTracker:sb://") || !strings.Contains(resp.Status, "Timestamp:") {
				t.Errorf("got %q, want %d with %q and tracking info", resp.Status, tt.code, tt.reason)
			}
			if i := strings.Index(tt.token, "sig="); i >= 0 && strings.Contains(resp.Status, tt.token[i:i+20]) {
				t.Errorf("status leaks the signature")
			}
		})
	}
}

func TestRightsAndEntityRules(t *testing.T) {
	t.Parallel()
	listenKey, otherKey := emulatortest.RandomKey(), emulatortest.RandomKey()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.Rules = append(c.Rules,
			emulator.Rule{Name: "listenOnly", Key: listenKey, Rights: emulator.RightListen},
			emulator.Rule{Name: "otherSend", Key: otherKey, Rights: emulator.RightSend | emulator.RightListen, Entity: "other"},
		)
	})
	host := s.Addr()
	mk := func(entity, name, key string) relay.Credentials {
		return relay.Credentials{Host: host, EntityPath: entity, KeyName: name, Key: key, Insecure: true}
	}
	listen(t, s, "hc1", relay.URLOptions{})
	tests := []struct {
		name   string
		c      relay.Credentials
		action relay.Action
		code   int
	}{
		{"listen-only rule cannot send", mk("hc1", "listenOnly", listenKey), relay.ActionConnect, 403},
		{"entity rule on its entity", mk("other", "otherSend", otherKey), relay.ActionListen, 101},
		{"entity rule elsewhere", mk("hc1", "otherSend", otherKey), relay.ActionConnect, 401},
		{"listen-only rule can listen", mk("hc1", "listenOnly", listenKey), relay.ActionListen, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := dialWS(t, dialer(nil), tt.c.WebSocketURL(tt.action, relay.URLOptions{}).String(), token(t, tt.c), nil)
			if tt.code == 101 {
				if err != nil {
					t.Fatalf("dial: %v (%s)", err, status(resp))
				}
				ws.Close()
				return
			}
			if resp == nil || resp.StatusCode != tt.code {
				t.Fatalf("got %s, want %d", status(resp), tt.code)
			}
			if tt.code == 403 && !hasReason(resp, "'Send' claim(s) are required") {
				t.Errorf("reason = %q", resp.Status)
			}
		})
	}
}

func TestTokenInQueryAndEscapedPrefix(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	c := s.Credentials("hc1")
	u := c.WebSocketURL(relay.ActionListen, relay.URLOptions{Token: token(t, c)})
	u.RawPath = strings.Replace(u.EscapedPath(), "/$hc/", "/%24hc/", 1)
	ws, resp, err := dialWS(t, dialer(nil), u.String(), "", nil)
	if err != nil {
		t.Fatalf("listen with sb-hc-token via /%%24hc/: %v (%s)", err, status(resp))
	}
	ws.Close()
}

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

func TestAnonymousSenders(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.Entities = []emulator.Entity{{Name: "open", RequiresClientAuthorization: false}}
	})
	cc := listen(t, s, "open", relay.URLOptions{})
	c := s.Credentials("open")
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), "", nil)
	acceptAddr(t, dialer(nil), readAccept(t, cc).Address, nil)
	if res := wait(t, sender); res.err != nil {
		t.Fatalf("anonymous sender: %v (%s)", res.err, status(res.resp))
	}
	// Listeners still need a token.
	_, resp, _ := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), "", nil)
	if resp == nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous listener: %s, want 401", status(resp))
	}
}
