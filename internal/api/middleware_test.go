package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.APIKeys = []string{"key-one-0123456789", "key-two-0123456789"} })
	tests := []struct {
		name, target string
		hdr          []string
		want         int
	}{
		{"none", "/messages", nil, 401},
		{"wrong bearer", "/messages", []string{"Authorization", "Bearer nope"}, 401},
		{"wrong header", "/token", []string{"X-API-Key", "key-one-012345678"}, 401},
		{"basic", "/token", []string{"Authorization", "Basic a2V5LW9uZS0wMTIzNDU2Nzg5"}, 401},
		{"bearer", "/messages", []string{"Authorization", "Bearer key-one-0123456789"}, 202},
		{"bearer lowercase", "/messages", []string{"Authorization", "bearer key-two-0123456789"}, 202},
		{"x-api-key", "/token", []string{"X-API-Key", "key-two-0123456789"}, 200},
		{"healthz needs none", "/healthz", nil, 200},
		{"readyz needs none", "/readyz", nil, 200},
	}
	for _, tt := range tests {
		method, ct, body := "GET", "", []byte(nil)
		if tt.target == "/messages" {
			method, ct, body = "POST", "text/plain", []byte("x")
		}
		resp := e.do(method, tt.target, ct, body, tt.hdr...)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if tt.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := len(e.rl.messages()); n != 2 {
		t.Errorf("relayed %d messages, want 2 (only the authenticated ones)", n)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) {
		c.CORSOrigins = []string{"https://app.example"}
		c.APIKeys = []string{"key-one-0123456789"}
	})
	pre := e.do("OPTIONS", "/messages", "", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization")
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	other := e.do("OPTIONS", "/token", "", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if other.StatusCode != 204 || other.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", other.StatusCode, other.Header)
	}
	resp := e.do("POST", "/messages", "text/plain", []byte("x"), "Origin", "https://app.example", "X-API-Key", "key-one-0123456789")
	if resp.StatusCode != 202 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("actual request: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	resp := e.do("POST", "/messages", "application/json", []byte(`{}`), "X-Request-Id", "caller-1.2:3")
	if got := resp.Header.Get("X-Request-Id"); got != "caller-1.2:3" {
		t.Errorf("X-Request-Id %q, want the caller's", got)
	}
	if p := decodeProblem(t, resp); p.RequestID != "caller-1.2:3" {
		t.Errorf("problem request_id %q", p.RequestID)
	}
	if !strings.Contains(e.logs.String(), "request_id=caller-1.2:3") {
		t.Errorf("request id not logged")
	}
	resp = e.do("GET", "/healthz", "", nil, "X-Request-Id", "bad id\x01")
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("invalid X-Request-Id not replaced: %q", got)
	}
}

func TestRecovererAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.rl.SendFn = func(context.Context, relay.Message) error { panic("boom") }
	r := e.do("POST", "/messages", "text/plain", []byte("x"))
	if p := decodeProblem(t, r); r.StatusCode != 500 || p.Code != "internal" || p.Detail != "internal error" {
		t.Errorf("panic: %d %+v", r.StatusCode, p)
	}
	if r := e.do("GET", "/nope", "", nil); r.StatusCode != 404 {
		t.Errorf("unknown path: %d", r.StatusCode)
	}
	if r := e.do("DELETE", "/messages", "", nil); r.StatusCode != 405 {
		t.Errorf("wrong method: %d", r.StatusCode)
	}
	if r := e.do("GET", "/metrics", "", nil); r.StatusCode != 404 {
		t.Errorf("metrics on the API: %d, want 404 (they are on the admin listener)", r.StatusCode)
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.APIKeys = []string{"api-key-0123456789abcdef"} })
	auth := []string{"Authorization", "Bearer api-key-0123456789abcdef"}
	r := e.do("GET", "/token?ttl=60", "", nil, auth...)
	var tok struct{ Token string }
	json.Unmarshal(readAll(t, r), &tok)
	parsed, err := relay.ParseToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/messages", "text/plain", []byte("x"), auth...)
	e.do("POST", "/messages", "text/plain", []byte("x"), "Authorization", "Bearer wrong-key-0123456789")
	e.rl.SendFn = func(context.Context, relay.Message) error { return fmt.Errorf("dial: %w", relay.ErrUnauthorized) }
	e.do("POST", "/messages", "text/plain", []byte("x"), auth...)
	logs := e.logs.String()
	testlog.AssertNoSecrets(t, logs, testKey, "api-key-0123456789abcdef", "wrong-key-0123456789", tok.Token, testlog.Signature(tok.Token), parsed.RawResource+"&sig")
}
