package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

type tokenResponse struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expiresAt"`
	Resource  string `json:"resource"`
	KeyName   string `json:"keyName"`
	URL       string `json:"url"`
}

// handleToken handles "GET /token?ttl=SECONDS": a sender token for the
// configured hybrid connection and a ready wss:// URL. Never the key, and
// never the gateway's own credential: without a SAS key (a fixed
// SharedAccessSignature, or no credentials) it answers 501
// token_minting_unavailable.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) error {
	c := s.cfg.Credentials
	if c.TokenSource != nil {
		return newProblem(codeTokenMintingUnavailable, "token minting needs a SAS key; this gateway authenticates to the relay with Microsoft Entra ID and never hands out its access tokens")
	}
	if c.SharedAccessSignature != "" || c.KeyName == "" || c.Key == "" {
		// A fixed SharedAccessSignature is the gateway's own credential,
		// often long-lived and with more rights than Send.
		return newProblem(codeTokenMintingUnavailable, "token minting needs a SAS key")
	}
	ttl := s.cfg.TokenTTL
	if q := r.URL.Query(); q.Has("ttl") {
		n, err := parseSeconds(q.Get("ttl"))
		switch {
		case err != nil || n < 1 || len(q["ttl"]) > 1:
			return invalid("invalid query parameter", fieldError{Parameter: "ttl", Detail: "must be a whole number of seconds, at least 1"})
		case n > int64(s.cfg.TokenMaxTTL/time.Second):
			return invalid("invalid query parameter", fieldError{Parameter: "ttl", Detail: "must be at most " + strconv.FormatInt(int64(s.cfg.TokenMaxTTL/time.Second), 10) + " seconds"})
		}
		ttl = time.Duration(n) * time.Second
	}
	tok, exp, err := c.Token(s.cfg.Now(), ttl)
	if errors.Is(err, relay.ErrTokenMintingUnavailable) {
		return &problem{Code: codeTokenMintingUnavailable, Err: err,
			Detail: "token minting needs a SAS key; this gateway authenticates to the relay with Microsoft Entra ID and never hands out its access tokens"}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, tokenResponse{
		Token:     tok,
		ExpiresAt: exp.UTC().Format(time.RFC3339),
		Resource:  c.ResourceURI(),
		KeyName:   c.KeyName,
		URL:       c.WebSocketURL(relay.ActionConnect, relay.URLOptions{Token: tok}).String(),
	})
}
