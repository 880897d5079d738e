package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// FuzzVerifyEntraToken: any bearer string is rejected with one of relay's
// token sentinels (or an Entra-only error), never a panic, and the error
// never quotes the input; only the issuer's own tokens pass.
func FuzzVerifyEntraToken(f *testing.F) {
	iss, err := NewEntraIssuer(EntraConfig{})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	good, _ := iss.Mint(EntraClaims{Roles: []string{"Send"}, ExpiresAt: now.Add(time.Hour)})
	parts := strings.Split(good, ".")
	for _, s := range []string{
		good, "Bearer " + good, parts[0] + "." + parts[1] + ".", parts[0] + "..", "..", "a.b.c", "",
		"eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.", // alg none
		"eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "eyJhbGciOiJFUzI1NiIsImtpZCI6W119.e30.AAAA",
		parts[0] + ".eyJleHAiOiJzb29uIiwiYXVkIjpbMSwyXX0." + parts[2],
		"SharedAccessSignature sr=a&sig=b&se=1&skn=c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		rights, exp, err := iss.VerifyEntraToken(raw, now)
		if err == nil {
			if stripBearer(raw) != good || rights != RightSend || exp.IsZero() {
				t.Fatalf("accepted %q: rights %v exp %v", raw, rights, exp)
			}
			return
		}
		known := []error{relay.ErrTokenMalformed, relay.ErrTokenSignature, relay.ErrTokenExpired, relay.ErrTokenScope, errEntraIssuer, errEntraNotYetValid}
		if !isAny(err, known) {
			t.Fatalf("unclassified error %v", err)
		}
		if len(raw) >= 8 {
			// Not counted: raw's text also in the message for another
			// token of its shape (a constant part of the message).
			_, _, other := iss.VerifyEntraToken(testlog.Scramble(raw), now)
			if other != nil && testlog.Echoes(raw, err.Error(), other.Error()) {
				t.Fatalf("error quotes the token: %v", err)
			}
		}
	})
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestEntraIssuerRS256: an RSA key signs and verifies RS256; its JWKS
// publishes it; an ES256 token of another issuer is refused.
func TestEntraIssuerRS256(t *testing.T) {
	t.Parallel()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	iss, err := NewEntraIssuer(EntraConfig{Key: k, Issuer: "https://issuer.test/", JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(EntraClaims{Roles: []string{"Azure Relay Owner"}})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if !strings.Contains(string(hdr), `"RS256"`) {
		t.Errorf("header %s, want RS256", hdr)
	}
	rights, _, err := iss.VerifyEntraToken(tok, time.Now())
	if err != nil || !rights.Has(RightListen|RightSend) {
		t.Fatalf("got %v, %v", rights, err)
	}
	other, _ := NewEntraIssuer(EntraConfig{Issuer: "https://issuer.test/"})
	es, _ := other.Mint(EntraClaims{Roles: []string{"Send"}})
	if _, _, err := iss.VerifyEntraToken(es, time.Now()); !errors.Is(err, relay.ErrTokenSignature) {
		t.Errorf("ES256 token of another key: got %v", err)
	}
	file, err := os.ReadFile(path)
	if err != nil || string(file) != string(iss.JWKS()) {
		t.Fatalf("JWKS file: %v", err)
	}
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(file, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["kty"] != "RSA" || set.Keys[0]["alg"] != "RS256" || set.Keys[0]["e"] != "AQAB" {
		t.Fatalf("JWKS %s: %v", file, err)
	}
	if _, err := NewEntraIssuer(EntraConfig{Key: mustRSA(t, 1024)}); err == nil {
		t.Error("a 1024-bit RSA key was accepted")
	}
}

func mustRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRightsFromRoles(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		roles []string
		want  Rights
	}{
		{nil, 0},
		{[]string{"Send"}, RightSend},
		{[]string{"listen", " SEND "}, RightListen | RightSend},
		{[]string{"Azure Relay Listener"}, RightListen},
		{[]string{"Azure Relay Sender"}, RightSend},
		{[]string{"Azure Relay Owner"}, RightManage},
		{[]string{"Owner", "Contributor", "Sender"}, 0},
	} {
		if got := RightsFromRoles(tt.roles); got != tt.want {
			t.Errorf("RightsFromRoles(%q) = %v, want %v", tt.roles, got, tt.want)
		}
	}
}

// TestEntraKeyFileAndJWKSEndpoint: the key file is created once and then
// reused (tokens minted from it verify against a server started with it),
// and the server publishes the key set.
func TestEntraKeyFileAndJWKSEndpoint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "entra.pem")
	k1, err := LoadOrCreateEntraKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	k2, err := LoadOrCreateEntraKey(path)
	if err != nil {
		t.Fatal(err)
	}
	minter, _ := NewEntraIssuer(EntraConfig{Key: k1})
	s, err := New(Config{Entra: &EntraConfig{Key: k2}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := minter.Mint(EntraClaims{Roles: []string{"Listen"}})
	if _, we := s.verify(tok, "hc1", RightListen); we != nil {
		t.Fatalf("token from the same key file refused: %v", we)
	}
	if _, we := s.verify(tok, "hc1", RightSend); we == nil || we.code != http.StatusForbidden {
		t.Fatalf("Listen token for Send: got %v, want 403", we)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", EntraJWKSPath, nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || string(body) != string(s.Entra().JWKS()) {
		t.Fatalf("GET %s: %d %s", EntraJWKSPath, rec.Code, body)
	}
	if err := os.WriteFile(path, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateEntraKey(path); err == nil {
		t.Error("a bad key file was accepted")
	}

	// Without Entra mode a JWT is just a malformed SAS token, and there
	// is no key set.
	plain, _ := New(Config{Rules: []Rule{{Name: "k", Key: "key", Rights: RightManage}}}, nil, nil)
	if _, we := plain.verify(tok, "hc1", RightListen); we == nil || we.code != http.StatusUnauthorized {
		t.Fatalf("JWT without Entra mode: got %v, want 401", we)
	}
	rec = httptest.NewRecorder()
	plain.Handler().ServeHTTP(rec, httptest.NewRequest("GET", EntraJWKSPath, nil))
	if rec.Code == 200 {
		t.Errorf("JWKS served without Entra mode")
	}
}

func TestParseEntraClient(t *testing.T) {
	t.Parallel()
	c, err := ParseEntraClient("app=s3cret:Listen,Azure Relay Sender")
	if err != nil || c.ID != "app" || c.Secret != "s3cret" || RightsFromRoles(c.Roles) != RightListen|RightSend || strings.Contains(c.String(), "s3cret") {
		t.Fatalf("got %v, %v", c, err)
	}
	if c, err := ParseEntraClient("app=s3cret"); err != nil || len(c.Roles) != 1 || c.Roles[0] != "Send" {
		t.Fatalf("default role: %v, %v", c, err)
	}
	for _, s := range []string{"", "app", "=s3cret", "app=", "app=s3cret:Owner", "a b=s3cret"} {
		if _, err := ParseEntraClient(s); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: got %v", s, err)
		}
	}
}

// TestEntraAuthorityErrors: the stand-in token endpoint answers bad
// requests as Entra ID does (OAuth error JSON), and only in Entra mode
// with clients.
func TestEntraAuthorityErrors(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Entra: &EntraConfig{Clients: []EntraClient{{ID: "app", Secret: "s3cret", Roles: []string{"Send"}}}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	post := func(form string) (int, string) {
		req := httptest.NewRequest("POST", "/tenant1/oauth2/v2.0/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	scope := "&scope=" + strings.ReplaceAll(relay.EntraScope, "/", "%2F")
	for _, tt := range []struct {
		form   string
		status int
		code   string
	}{
		{"grant_type=password&client_id=app&client_secret=s3cret" + scope, 400, "unsupported_grant_type"},
		{"grant_type=client_credentials&client_id=app&client_secret=s3cret&scope=https%3A%2F%2Fgraph", 400, "invalid_scope"},
		{"grant_type=client_credentials&client_id=nobody&client_secret=s3cret" + scope, 400, "unauthorized_client"},
		{"grant_type=client_credentials&client_id=app&client_secret=wrong" + scope, 401, "invalid_client"},
		{"grant_type=client_credentials&client_id=app&client_secret=s3cret" + scope, 200, ""},
	} {
		status, body := post(tt.form)
		if status != tt.status || !strings.Contains(body, tt.code) || strings.Contains(body, "s3cret") {
			t.Errorf("%s: got %d %s", tt.form, status, body)
		}
		if status == 200 {
			var resp struct {
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
			}
			json.Unmarshal([]byte(body), &resp)
			if rights, _, err := s.Entra().VerifyEntraToken(resp.AccessToken, time.Now()); err != nil || rights != RightSend || resp.ExpiresIn != 3600 {
				t.Errorf("issued token: %v %v %d", rights, err, resp.ExpiresIn)
			}
		}
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/tenant1/v2.0/.well-known/openid-configuration", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"token_endpoint":"http://example.com/tenant1/oauth2/v2.0/token"`) {
		t.Errorf("openid-configuration: %d %s", rec.Code, rec.Body)
	}
}
