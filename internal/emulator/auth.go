package emulator

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

func unescapePath(s string) (string, error) { return url.PathUnescape(s) }

// tokenSource says where a request's SAS token came from.
type tokenSource int

const (
	tokenNone tokenSource = iota
	tokenHeader
	tokenQuery
	tokenAuthorization // HTTP request mode only
)

// findToken returns the request's SAS token: the ServiceBusAuthorization
// header, else the sb-hc-token query parameter, else (HTTP request mode
// only) the Authorization header.
func findToken(r *http.Request, httpMode bool) (string, tokenSource) {
	if t := r.Header.Get(relay.HeaderAuthorization); t != "" {
		return t, tokenHeader
	}
	if t := r.URL.Query().Get(relay.QueryToken); t != "" {
		return t, tokenQuery
	}
	if httpMode {
		if t := r.Header.Get("Authorization"); t != "" {
			return t, tokenAuthorization
		}
	}
	return "", tokenNone
}

// authorize checks r's token for entity name with the need right. It
// returns the verified token (nil when anonymous access was allowed).
// Errors are 401 (missing, malformed, unknown key, bad signature, expired)
// or 403 (wrong scope or missing right); they never contain the token.
func (s *Server) authorize(r *http.Request, name string, need Rights, anonymousOK, httpMode bool) (*relay.Token, *wireError) {
	raw, _ := findToken(r, httpMode)
	if anonymousOK {
		return nil, nil
	}
	if s.cfg.QueryTokenOnly {
		raw = r.URL.Query().Get(relay.QueryToken)
		if raw == "" {
			return nil, s.authFailed(r, name, &wireError{code: http.StatusUnauthorized, reason: "unauthorized",
				text: "MissingToken: This relay accepts the SAS token only in the sb-hc-token query parameter."})
		}
	}
	if raw == "" {
		return nil, s.authFailed(r, name, &wireError{code: http.StatusUnauthorized, reason: "unauthorized",
			text: "MissingToken: The request contains no SAS token in the ServiceBusAuthorization header or the sb-hc-token query parameter."})
	}
	tok, we := s.verify(raw, name, need)
	if we != nil {
		return nil, s.authFailed(r, name, we)
	}
	return tok, nil
}

// verify checks raw for entity name and the need right.
func (s *Server) verify(raw, name string, need Rights) (*relay.Token, *wireError) {
	if s.entra != nil && looksLikeJWT(raw) {
		return s.verifyEntra(raw, name, need)
	}
	key := verifiedKey(raw, name, need)
	now := time.Now()
	if s.verifier.Now != nil {
		now = s.verifier.Now()
	}
	if tok := s.verified.get(key, now, s.verifier.Grace); tok != nil {
		return tok, nil
	}
	tok, err := s.verifier.Verify(raw, "", name)
	if err != nil {
		return nil, tokenError(err)
	}
	var rights Rights
	for _, rule := range s.cfg.Rules {
		if rule.Name == tok.KeyName && (rule.Entity == "" || strings.EqualFold(rule.Entity, name)) && tok.CheckSignature(rule.Key) {
			rights |= rule.Rights
		}
	}
	if !rights.Has(need) {
		return nil, &wireError{code: http.StatusForbidden, reason: "forbidden", err: errors.New("missing right"),
			text: "Unauthorized access. '" + need.String() + "' claim(s) are required to perform this operation."}
	}
	s.verified.put(key, tok)
	return tok, nil
}

// tokenError maps a relay.Verifier error to the service's status and text.
func tokenError(err error) *wireError {
	we := &wireError{code: http.StatusUnauthorized, reason: "unauthorized", err: err}
	switch {
	case errors.Is(err, relay.ErrTokenExpired):
		we.text = "The token is expired."
		we.reason = "token_expired"
	case errors.Is(err, relay.ErrTokenSignature):
		we.text = "The token has an invalid signature."
	case errors.Is(err, relay.ErrTokenUnknownKey):
		// The service does not distinguish an unknown key name.
		we.text = "The token has an invalid signature."
	case errors.Is(err, relay.ErrTokenScope):
		we.code, we.reason = http.StatusForbidden, "forbidden"
		we.text = "InvalidAudience: The token's audience is not valid for this entity."
	default:
		we.text = "MalformedToken: The credentials contained in the authorization header are not in the SharedAccessSignature format."
	}
	return we
}

// authFailed logs an authentication failure, rate-limited: clients with a
// bad token may reconnect thousands of times a second. The log names the
// entity and the failure, never the token.
func (s *Server) authFailed(r *http.Request, name string, we *wireError) *wireError {
	if ok, suppressed := s.authLog.allow(time.Now()); ok {
		attrs := []slog.Attr{
			slog.String("entity", name),
			slog.Int("status", we.code),
			slog.String("remote", r.RemoteAddr),
		}
		if we.err != nil {
			attrs = append(attrs, slog.String("cause", we.err.Error()))
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int("suppressed", suppressed))
		}
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "authorization failed", attrs...)
	}
	return we
}
