package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.TokenMaxTTL = 2 * time.Hour })
	tests := []struct {
		query      string
		wantStatus int
		wantTTL    time.Duration
	}{
		{"", 200, time.Hour},
		{"?ttl=60", 200, time.Minute},
		{"?ttl=7200", 200, 2 * time.Hour},
		{"?ttl=7201", 400, 0},
		{"?ttl=0", 400, 0},
		{"?ttl=-5", 400, 0},
		{"?ttl=abc", 400, 0},
		{"?ttl=1.5", 400, 0},
	}
	for _, tt := range tests {
		resp := e.do("GET", "/token"+tt.query, "", nil)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.query, resp.StatusCode, tt.wantStatus)
			continue
		}
		body := readAll(t, resp)
		if strings.Contains(string(body), testKey) {
			t.Fatalf("%s: response contains the key", tt.query)
		}
		if tt.wantStatus != 200 {
			var p problem
			json.Unmarshal(body, &p)
			if len(p.Errors) != 1 || p.Errors[0].Parameter != "ttl" {
				t.Errorf("%s: errors %+v, want one for ttl", tt.query, p.Errors)
			}
			continue
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		var tok struct{ Token, ExpiresAt, Resource, KeyName, URL string }
		json.Unmarshal(body, &tok)
		parsed, err := relay.ParseToken(tok.Token)
		if err != nil {
			t.Fatalf("%s: token does not parse: %v", tt.query, err)
		}
		if !parsed.CheckSignature(testKey) || !parsed.Covers("ns.servicebus.windows.net", "hc1") {
			t.Errorf("%s: token does not verify for the entity", tt.query)
		}
		if want := testNow.Add(tt.wantTTL).Format(time.RFC3339); tok.ExpiresAt != want || !parsed.Expiry.Equal(testNow.Add(tt.wantTTL)) {
			t.Errorf("%s: expiresAt %s, want %s", tt.query, tok.ExpiresAt, want)
		}
		if tok.Resource != "http://ns.servicebus.windows.net/hc1" || tok.KeyName != "send" {
			t.Errorf("resource %q keyName %q", tok.Resource, tok.KeyName)
		}
		if !strings.HasPrefix(tok.URL, "wss://ns.servicebus.windows.net/$hc/hc1?sb-hc-action=connect&sb-hc-id=") || !strings.Contains(tok.URL, "&sb-hc-token=SharedAccessSignature") {
			t.Errorf("url %q", tok.URL)
		}
	}
}

// TestTokenWithFixedSAS: a gateway configured with a fixed
// SharedAccessSignature never hands out that credential (issue 12, item 2).
func TestTokenWithFixedSAS(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(365 * 24 * time.Hour)
	sas := relay.CreateToken("http://ns.servicebus.windows.net/hc1", "RootManageSharedAccessKey", testKey, exp)
	e := newEnv(t, func(c *api.Config) {
		c.Credentials = relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1", SharedAccessSignature: sas}
	})
	for _, q := range []string{"", "?ttl=60"} {
		resp := e.do("GET", "/token"+q, "", nil)
		body := readAll(t, resp)
		if resp.StatusCode != 501 || !strings.Contains(string(body), `"code":"token_minting_unavailable"`) ||
			!strings.Contains(string(body), "token minting needs a SAS key") {
			t.Errorf("GET /token%s: got %d %s, want 501 token_minting_unavailable", q, resp.StatusCode, body)
		}
		sig := sas[strings.Index(sas, "sig="):]
		if strings.Contains(string(body), sig[:20]) {
			t.Fatalf("GET /token%s: response contains the gateway's signature", q)
		}
	}
}
