package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

// TestTokenRefusedInEntraMode: with Entra ID credentials the gateway holds
// no SAS key, so GET /token answers 501 token_minting_unavailable and
// never asks the token source (whose token must not leak).
func TestTokenRefusedInEntraMode(t *testing.T) {
	t.Parallel()
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	e := newEnv(t, func(c *api.Config) {
		c.Credentials = relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc",
			TokenSource: relay.TokenSourceFunc(func(context.Context) (relay.AccessToken, error) {
				t.Error("GET /token asked the token source")
				return relay.AccessToken{Token: jwt, ExpiresOn: time.Now().Add(time.Hour)}, nil
			})}
	})
	resp := e.do("GET", "/token?ttl=60", "", nil)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var p struct{ Code, Title, Detail string }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Code != "token_minting_unavailable" || !strings.Contains(p.Detail, "needs a SAS key") || p.Title != "Token minting needs a SAS key" {
		t.Errorf("got %+v", p)
	}
	if strings.Contains(string(body), jwt) || strings.Contains(e.logs.String(), jwt) {
		t.Error("the access token leaked")
	}
}
