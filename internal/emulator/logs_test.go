package emulator_test

import (
	"io"
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

// TestLogsHoldNoSecrets runs good and bad flows with debug logging and
// checks that no key, signature or token reaches the log, and that a tight
// loop of bad tokens is answered 401 every time but logged only a few times.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	log, logs := testlog.New(t)
	key := emulatortest.RandomKey()
	s, err := emulator.New(emulator.Config{
		Rules:      []emulator.Rule{{Name: "root", Key: key, Rights: emulator.RightManage}},
		AutoCreate: true,
	}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	c := s.Credentials("hc1")
	good := token(t, c)
	bad := relay.CreateToken(c.ResourceURI(), c.KeyName, "wrong", time.Now().Add(time.Hour))
	expired := relay.CreateToken(c.ResourceURI(), c.KeyName, c.Key, time.Now().Add(-time.Hour))

	// Good flow: listener, sender, relayed message, HTTP request.
	cc := listen(t, s, "hc1", relay.URLOptions{})
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{Token: good}).String(), "", nil)
	lws := acceptAddr(t, dialer(nil), readAccept(t, cc).Address, nil)
	res := wait(t, sender)
	if res.err != nil {
		t.Fatal(res.err)
	}
	res.ws.WriteMessage(websocket.TextMessage, []byte("hi"))
	lws.ReadMessage()
	msg, _ := relay.EncodeControlMessage(&relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: good}})
	cc.WriteMessage(websocket.TextMessage, msg)

	// Bad flows in a tight loop, header and query.
	const attempts = 200
	start := time.Now()
	for i := range attempts {
		tok := []string{bad, expired, "SharedAccessSignature sr=x&sig=" + key + "&se=1&skn=root"}[i%3]
		u := c.WebSocketURL(relay.ActionListen, relay.URLOptions{})
		hdr := tok
		if i%2 == 1 {
			u.RawQuery += "&sb-hc-token=" + url.QueryEscape(tok)
			hdr = ""
		}
		_, resp, _ := dialWS(t, dialer(nil), u.String(), hdr, nil)
		if resp == nil || resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %s, want 401", i, status(resp))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, c.HTTPURL(relay.URLOptions{}).String(), strings.NewReader("x"))
	req.Header.Set("Authorization", bad)
	if r, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	// A bad renewToken closes the channel and must not log the token.
	badRenew, _ := relay.EncodeControlMessage(&relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: bad}})
	cc.WriteMessage(websocket.TextMessage, badRenew)
	cc.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		if _, _, err := cc.ReadMessage(); err != nil {
			break
		}
	}
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	out := logs.String()
	// The key, then each token's signature as sent and unescaped.
	secrets := []string{key}
	for _, tok := range []string{good, bad, expired} {
		raw, _ := url.QueryUnescape(testlog.Signature(tok))
		secrets = append(secrets, testlog.Signature(tok), raw)
	}
	testlog.AssertNoSecrets(t, out, append(secrets, "SharedAccessSignature")...)
	// The limiter lets 5 lines a second through (server.go): the bound
	// follows the time the loop took, so a slow machine cannot fail it.
	limit := 5 * (int(time.Since(start)/time.Second) + 2)
	if n := strings.Count(out, "authorization failed"); n == 0 || n > limit || n >= attempts/2 {
		t.Errorf("%d 'authorization failed' lines for %d attempts; want at most %d (rate-limited)", n, attempts, limit)
	}
	if !strings.Contains(out, "suppressed=") && strings.Count(out, "authorization failed") >= attempts {
		t.Errorf("no suppression count logged")
	}
}
