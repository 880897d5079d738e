package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EntraScope is the OAuth 2.0 scope of Microsoft Entra ID access tokens
// for Azure Relay; EntraAudience is the audience such tokens carry.
const (
	EntraScope    = "https://relay.azure.net/.default"
	EntraAudience = "https://relay.azure.net"
)

// Token source errors. They live here rather than in relay.go's block so
// that this feature stays in its own file; both blocks are the package's
// sentinels.
var (
	// ErrTokenSource wraps every failure of a Credentials.TokenSource
	// (no identity available, the identity provider unreachable, an empty
	// or expired token).
	ErrTokenSource = errors.New("relay: token source failed")
	// ErrTokenMintingUnavailable is returned by Credentials.Token for
	// credentials that authenticate with a TokenSource: minting a SAS
	// token for someone else needs a SAS key.
	ErrTokenMintingUnavailable = errors.New("relay: token minting needs a SAS key")
)

// AccessToken is a bearer token from a TokenSource: a Microsoft Entra ID
// JWT, sent where a SAS token goes (ServiceBusAuthorization, sb-hc-token,
// renewToken). String and LogValue never show Token.
type AccessToken struct {
	Token     string
	ExpiresOn time.Time
}

// String describes t without the token.
func (t AccessToken) String() string {
	return "access token (expires " + t.ExpiresOn.UTC().Format(time.RFC3339) + ")"
}

// GoString is String, so %#v does not print the token either.
func (t AccessToken) GoString() string { return t.String() }

// TokenSource supplies access tokens for the relay, typically from
// Microsoft Entra ID for EntraScope (see internal/azauth, which adapts an
// azcore.TokenCredential). Token may be called often — on every dial,
// every control channel, every HTTP request and every renewal — so an
// implementation caches and returns a cached token until shortly before
// it expires. Token must be safe for concurrent use; ctx bounds a fetch.
// Errors must not contain a token or a client secret.
type TokenSource interface {
	Token(ctx context.Context) (AccessToken, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context) (AccessToken, error)

// Token calls f(ctx).
func (f TokenSourceFunc) Token(ctx context.Context) (AccessToken, error) { return f(ctx) }

// fixedSource returns one token, already fetched: a pool dial uses it so
// that the token it sends is the one whose expiry schedules its renewal.
type fixedSource struct{ t AccessToken }

func (f fixedSource) Token(context.Context) (AccessToken, error) { return f.t, nil }

// accessToken returns the token to send for c and its expiry: from
// TokenSource when set (which must be non-empty, with an expiry after now), else a
// SAS token minted by Token. ("", zero, nil) means anonymous access.
func (c Credentials) accessToken(ctx context.Context, now time.Time, ttl time.Duration) (string, time.Time, error) {
	if c.TokenSource == nil {
		return c.Token(now, ttl)
	}
	t, err := c.TokenSource.Token(ctx)
	switch {
	case err != nil:
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrTokenSource, err)
	case strings.TrimSpace(t.Token) == "":
		return "", time.Time{}, fmt.Errorf("%w: empty token", ErrTokenSource)
	case t.ExpiresOn.IsZero():
		return "", time.Time{}, fmt.Errorf("%w: token has no expiry", ErrTokenSource)
	case !now.Before(t.ExpiresOn):
		return "", time.Time{}, fmt.Errorf("%w: token expired at %s", ErrTokenSource, t.ExpiresOn.UTC().Format(time.RFC3339))
	}
	return t.Token, t.ExpiresOn, nil
}

// errStaleToken: a renewal found no token newer than the one in use.
var errStaleToken = errors.New("relay: token source returned no newer token")

// dialCredentials returns the credentials a pool dial at now uses and the
// expiry of their token (zero when there is nothing to renew). With a
// TokenSource it fetches the token once, so the connection's renewal is
// scheduled by the token's own ExpiresOn; notAfter is the expiry of the
// token being renewed (zero on a first dial), and a token that does not
// expire later gives errStaleToken: identity libraries hand out a cached
// token until a few minutes before its expiry.
func (p *Pool) dialCredentials(ctx context.Context, now, notAfter time.Time) (Credentials, time.Time, error) {
	creds := p.cfg.Credentials
	if creds.TokenSource == nil {
		return creds, p.tokenExpiry(now), nil
	}
	tok, exp, err := creds.accessToken(ctx, now, 0)
	if err != nil {
		return creds, time.Time{}, err
	}
	if !notAfter.IsZero() && !exp.After(notAfter) {
		return creds, time.Time{}, errStaleToken
	}
	creds.TokenSource = fixedSource{AccessToken{Token: tok, ExpiresOn: exp}}
	return creds, exp, nil
}

// renewedToken fetches the listener's next token for renewToken. With a
// TokenSource, tok is "" when there is no token expiring later than expiry
// yet, or the source failed (logged) while the current token still runs;
// the caller tries again after retryIn.
func (l *Listener) renewedToken(ctx context.Context, expiry time.Time) (tok string, exp time.Time, retryIn time.Duration, err error) {
	tok, exp, err = l.cfg.Credentials.accessToken(ctx, l.cfg.Now(), l.cfg.TokenTTL)
	if l.cfg.Credentials.TokenSource == nil {
		return tok, exp, 0, err
	}
	retryIn = max(l.cfg.RenewBefore/5, 50*time.Millisecond)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			l.log.Warn("token renewal failed; retrying", "err", err, "retry_in", retryIn)
		}
		return "", expiry, retryIn, nil
	case !exp.After(expiry):
		return "", expiry, retryIn, nil
	}
	return tok, exp, 0, nil
}

// renewable reports whether c's tokens can be renewed: minted from a key
// or fetched from a TokenSource.
func (c Credentials) renewable() bool {
	return c.TokenSource != nil || (c.SharedAccessSignature == "" && c.Key != "")
}

// ParseEntraConnectionString parses a connection string for Microsoft
// Entra ID authentication: Endpoint and EntityPath (and optionally
// UseDevelopmentEmulator), as ParseConnectionString, but without a key or
// signature, which are an error here. The caller sets TokenSource.
func ParseEntraConnectionString(s string) (Credentials, error) {
	c, err := parseConnectionString(s)
	if err != nil {
		return Credentials{}, err
	}
	if c.KeyName != "" || c.Key != "" || c.SharedAccessSignature != "" {
		return Credentials{}, credErr("connection string", "must not contain SharedAccessKeyName, SharedAccessKey or SharedAccessSignature with Entra ID authentication")
	}
	return c, c.ValidateTarget()
}

// ValidateTarget checks only Host and EntityPath, by their
// connection-string names: what Entra ID credentials need besides a
// TokenSource.
func (c Credentials) ValidateTarget() error {
	c.KeyName, c.Key, c.SharedAccessSignature, c.TokenSource = "", "", "", fixedSource{}
	return c.Validate()
}
