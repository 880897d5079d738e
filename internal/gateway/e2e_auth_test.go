package gateway

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestE2ETokenAuthenticatesSender(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.APIKeys = []string{"test-api-key-0123456789"} })
	e.waitReady()

	if resp, b := e.do("GET", "/token", "", nil); resp.StatusCode != 401 || problemCode(b) != "unauthenticated" {
		t.Fatalf("without key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do("POST", "/messages", "text/plain", []byte("x"), "X-API-Key", "wrong-key-0123456789"); resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	resp, b := e.do("GET", "/token?ttl=120", "", nil, "Authorization", "Bearer test-api-key-0123456789")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), e.emu.Credentials(entity).Key) {
		t.Fatal("token response contains the key")
	}
	var tok struct{ Token, URL, ExpiresAt string }
	json.Unmarshal(b, &tok)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The URL, as a browser would open it.
	ws, _, err := websocket.Dial(ctx, tok.URL, nil)
	if err != nil {
		t.Fatalf("dial the token URL: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("from the browser")); err != nil {
		t.Fatal(err)
	}
	if f := e.next(); string(f.data) != "from the browser" {
		t.Fatalf("listener got %q", f.data)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// The token with relay.Dial, in the query.
	cr := e.emu.Credentials(entity)
	cr.KeyName, cr.Key, cr.SharedAccessSignature = "", "", tok.Token
	ws, err = relay.Dial(ctx, cr, relay.DialOptions{TokenInQuery: true})
	if err != nil {
		t.Fatalf("relay.Dial with the token: %v", err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// A tampered token is refused.
	u, _ := url.Parse(tok.URL)
	q := u.Query()
	sig := regexp.MustCompile(`sig=[^&]+`)
	q.Set("sb-hc-token", sig.ReplaceAllString(q.Get("sb-hc-token"), "sig=AAAA"+url.QueryEscape("abcdefghijklmnopqrstuvwxyz0123456789ABCDE=")))
	u.RawQuery = q.Encode()
	_, hresp, err := websocket.Dial(ctx, u.String(), nil)
	if err == nil || hresp == nil || hresp.StatusCode != 401 {
		t.Fatalf("tampered token: err %v, response %v", err, hresp)
	}
}

func TestE2ERelayRefusesCredentials(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.Key = emulatortest.RandomKey() })
	testlog.WaitFor(t, "readyz to report the refusal", func() bool {
		resp, b := e.do("GET", "/readyz", "", nil)
		return resp.StatusCode == 503 && strings.Contains(string(b), "credentials")
	})
	resp, b := e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 502 || problemCode(b) != "relay_auth" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
	if resp.StatusCode != 502 || problemCode(b) != "relay_auth" {
		t.Fatalf("request mode: got %d %s", resp.StatusCode, b)
	}
}

// TestE2ELogsHoldNoSecrets runs every path that touches credentials and
// scans every component's log lines for the key, signatures and tokens.
func TestE2ELogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	const apiKey = "secret-api-key-0123456789"
	e.startGateway(func(c *config.Gateway) { c.APIKeys = []string{apiKey}; c.LogLevel = "debug" })
	e.waitReady()
	_, b := e.do("GET", "/token", "", nil, "X-API-Key", apiKey)
	var tok struct{ Token, URL string }
	json.Unmarshal(b, &tok)
	e.do("POST", "/messages", "text/plain", []byte("x"), "X-API-Key", apiKey)
	e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"), "X-API-Key", apiKey)
	e.do("POST", "/messages", "text/plain", []byte("x"), "Authorization", "Bearer wrong-"+apiKey)
	e.emu.DropConnections()
	e.waitReady()
	// A tampered token at the relay, so the emulator logs a refusal too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, strings.Replace(tok.URL, "sig%3D", "sig%3DX", 1), nil); err == nil {
		t.Error("tampered token accepted")
	}
	e.gw.shutdown()

	logs := e.logs.String()
	key := e.emu.Credentials(entity).Key
	sig := regexp.MustCompile(`sig=([^&]+)`).FindStringSubmatch(tok.Token)[1]
	unesc, _ := url.QueryUnescape(sig)
	// The key, the API key, the token, its signature as sent and decoded,
	// and the token URL.
	testlog.AssertNoSecrets(t, logs, key, apiKey, tok.Token, sig, unesc, tok.URL)
	if !strings.Contains(logs, "http request") {
		t.Fatal("captured no logs")
	}
}
