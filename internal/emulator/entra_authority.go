package emulator

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// EntraClient is an application registered with the emulator's stand-in
// authority: azidentity's client-secret flow (AZURE_CLIENT_ID,
// AZURE_CLIENT_SECRET) gets tokens with Roles for it.
type EntraClient struct {
	ID     string
	Secret string
	Roles  []string
}

// String describes the client without its secret.
func (c EntraClient) String() string { return c.ID + ":" + strings.Join(c.Roles, ",") }

// ParseEntraClient parses "CLIENT_ID=SECRET[:Role,Role]" (default role
// Send). Errors never contain the secret.
func ParseEntraClient(s string) (EntraClient, error) {
	id, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	id = strings.TrimSpace(id)
	if !ok || id == "" || strings.ContainsAny(id, "/?#& ") {
		return EntraClient{}, errors.New("want CLIENT_ID=SECRET[:Role,…] with a client id without / ? # & or spaces")
	}
	secret, roles, _ := strings.Cut(rest, ":")
	if secret == "" {
		return EntraClient{}, fmt.Errorf("client %q: secret is empty", id)
	}
	c := EntraClient{ID: id, Secret: secret, Roles: []string{"Send"}}
	if roles != "" {
		c.Roles = nil
		for r := range strings.SplitSeq(roles, ",") {
			if RightsFromRoles([]string{r}) == 0 {
				return EntraClient{}, fmt.Errorf("client %q: unknown role %q (want Listen, Send, Manage or an Azure Relay role name)", id, r)
			}
			c.Roles = append(c.Roles, strings.TrimSpace(r))
		}
	}
	return c, nil
}

// entraTokenLifetime is the lifetime of tokens the authority issues.
const entraTokenLifetime = time.Hour

// serveEntra answers the Entra mode endpoints and reports whether it did:
// GET EntraJWKSPath, and, when clients are configured, a Microsoft Entra
// ID stand-in for the client-credentials flow of azidentity (any tenant):
// GET /{tenant}/v2.0/.well-known/openid-configuration and
// POST /{tenant}/oauth2/v2.0/token. azidentity needs https, so the
// authority is reached over the emulator's TLS.
func (s *Server) serveEntra(w http.ResponseWriter, r *http.Request) bool {
	if s.entra == nil {
		return false
	}
	if r.URL.Path == EntraJWKSPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(s.entra.jwks)
		return true
	}
	if len(s.cfg.Entra.Clients) == 0 {
		return false
	}
	tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case tenant == "" || strings.ContainsAny(tenant, "%$"):
		return false
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base := scheme + "://" + r.Host + "/" + tenant
		writeAuthorityJSON(w, http.StatusOK, map[string]any{
			"issuer":                 base + "/v2.0",
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"jwks_uri":               scheme + "://" + r.Host + EntraJWKSPath,
		})
		return true
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		s.issueEntraToken(w, r)
		return true
	}
	return false
}

// issueEntraToken answers a client-credentials token request.
func (s *Server) issueEntraToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeAuthorityError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: Only the client_credentials grant with client_secret is supported by relay-emulator.")
		return
	}
	if scope := r.PostForm.Get("scope"); !strings.Contains(" "+scope+" ", " "+relay.EntraScope+" ") {
		writeAuthorityError(w, http.StatusBadRequest, "invalid_scope", "AADSTS70011: The scope must be "+relay.EntraScope+".")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	var client *EntraClient
	for i := range s.cfg.Entra.Clients {
		if s.cfg.Entra.Clients[i].ID == id {
			client = &s.cfg.Entra.Clients[i]
		}
	}
	switch {
	case client == nil:
		writeAuthorityError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
		return
	case subtle.ConstantTimeCompare([]byte(secret), []byte(client.Secret)) != 1:
		s.log.Warn("entra token refused: invalid client secret", slog.String("client_id", id))
		writeAuthorityError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	exp := time.Now().Add(entraTokenLifetime).Truncate(time.Second)
	tok, err := s.entra.Mint(EntraClaims{Roles: client.Roles, Subject: client.ID, ExpiresAt: exp})
	if err != nil {
		writeAuthorityError(w, http.StatusInternalServerError, "server_error", "AADSTS90000: token signing failed.")
		return
	}
	s.log.Info("entra token issued", slog.String("client_id", client.ID), slog.Any("roles", client.Roles), slog.Time("expires", exp))
	w.Header().Set("Cache-Control", "no-store")
	lifetime := int(entraTokenLifetime / time.Second)
	writeAuthorityJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": tok})
}

func writeAuthorityError(w http.ResponseWriter, status int, code, desc string) {
	writeAuthorityJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func writeAuthorityJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
