package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// DefaultReadLimit is the largest WebSocket message (16 MiB) a connection
// opened by Dial or the Listener accepts unless told otherwise.
// coder/websocket's own default is 32 KiB, and a larger message closes the
// connection with 1009, so the limit is always set on purpose.
const DefaultReadLimit = 16 << 20

// DialOptions refine Dial. The zero value dials the entity itself with a
// fresh sb-hc-id and the token in the ServiceBusAuthorization header.
type DialOptions struct {
	// Suffix is an optional sub-path after the entity name ("a/b"); the
	// listener sees it in the accept address.
	Suffix string
	// Query holds application query parameters (sb-hc-* names are dropped).
	Query url.Values
	// Header holds extra handshake headers; the listener sees them in
	// connectHeaders.
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol.
	Subprotocols []string
	// ID is the sb-hc-id; "" means a fresh NewID().
	ID string
	// TokenInQuery sends the token in sb-hc-token instead of the
	// ServiceBusAuthorization header; it overrides TokenPlacement.
	TokenInQuery bool
	// TokenPlacement is header (""), query or auto: header first, then,
	// after a 401, the query.
	TokenPlacement TokenPlacement
	// TokenTTL is the lifetime of the minted token; 0 means DefaultTokenTTL.
	TokenTTL time.Duration
	// HTTPClient carries the TLS configuration (a custom CA, for example);
	// nil means http.DefaultClient. Its Timeout, if set, bounds the
	// handshake.
	HTTPClient *http.Client
	// ReadLimit is the largest message the connection accepts; 0 means
	// DefaultReadLimit.
	ReadLimit int64
	// Now returns the current time for token minting; nil means time.Now.
	Now func() time.Time
}

// Dial opens a sender WebSocket to c's Hybrid Connection
// (sb-hc-action=connect). ctx bounds the dial and the handshake only: once
// Dial has returned, cancelling ctx does not affect the connection. The
// relay holds the handshake until a listener accepts or rejects, so give ctx
// a deadline.
//
// When the relay or the listener refuses the upgrade, the error is a
// *StatusError with the status and reason phrase; deadline expiry gives a
// *StatusError matching ErrTimeout. Errors never contain the token. The
// returned connection has its read limit set (o.ReadLimit) and follows
// coder/websocket's concurrency rules: one reader and one writer at a time.
// Dial is safe for concurrent use.
func Dial(ctx context.Context, c Credentials, o DialOptions) (*websocket.Conn, error) {
	return dialPlaced(ctx, c, o, &tokenPlacer{p: o.placement()})
}

// dialWS dials action on c's entity with a freshly minted token and returns
// the connection and the sb-hc-id used.
func dialWS(ctx context.Context, c Credentials, action Action, o DialOptions) (*websocket.Conn, string, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	tok, _, err := c.accessToken(ctx, now(), o.TokenTTL)
	if err != nil {
		return nil, "", err
	}
	id := o.ID
	if id == "" {
		id = NewID()
	}
	uo := URLOptions{Suffix: o.Suffix, Query: o.Query, ID: id}
	h := o.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Del(HeaderAuthorization)
	if tok != "" {
		if o.TokenInQuery {
			uo.Token = tok
		} else {
			h.Set(HeaderAuthorization, tok)
		}
	}
	u := c.WebSocketURL(action, uo)
	ws, err := dialURL(ctx, u.String(), action, &websocket.DialOptions{
		HTTPClient:   o.HTTPClient,
		HTTPHeader:   h,
		Subprotocols: o.Subprotocols,
	}, tok)
	if err != nil {
		return nil, id, err
	}
	ws.SetReadLimit(readLimit(o.ReadLimit))
	return ws, id, nil
}

func readLimit(n int64) int64 {
	if n <= 0 {
		return DefaultReadLimit
	}
	return n
}

// dialURL performs the WebSocket handshake on u and turns a refusal into a
// *StatusError. secret (the token, if any) is scrubbed from every error.
func dialURL(ctx context.Context, u string, action Action, opts *websocket.DialOptions, secret string) (*websocket.Conn, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = dialClient
	}
	opts.HTTPClient = upgradeClient(opts.HTTPClient)
	ws, resp, err := websocket.Dial(ctx, u, opts)
	if err == nil {
		return ws, nil
	}
	return nil, refusal(ctx, action, resp, err, secret)
}

// dialClient dials when the caller gave no client. A WebSocket handshake
// never reuses a connection, and an idle kept-alive connection left by a
// refused or cancelled handshake would only hold up the relay's shutdown.
var dialClient = &http.Client{Transport: &http.Transport{
	Proxy:             http.ProxyFromEnvironment,
	DisableKeepAlives: true,
	ForceAttemptHTTP2: false,
}}

// refusal classifies a failed handshake.
func refusal(ctx context.Context, action Action, resp *http.Response, err error, secret string) error {
	redactURLErrors(err)
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return &StatusError{
			StatusCode: resp.StatusCode,
			Reason:     redact(reasonPhrase(resp), secret),
			Action:     action,
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded {
		return &StatusError{Reason: "no answer before the deadline", Action: action, err: newRedacted("", err, secret)}
	}
	return unreachable(fmt.Sprintf("relay: %s", action), ctx, err, secret)
}

// unreachable wraps a transport error (no response at all): it matches
// ErrUnreachable unless the caller cancelled.
func unreachable(prefix string, ctx context.Context, err error, secret string) error {
	e := newRedacted(prefix, err, secret)
	if !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		e.kind = ErrUnreachable
	}
	return e
}

// reasonPhrase returns the status line's text after the code, which the
// relay fills with its diagnostic ("Endpoint does not exist. TrackingId:…").
func reasonPhrase(resp *http.Response) string {
	s := strings.TrimSpace(strings.TrimPrefix(resp.Status, fmt.Sprint(resp.StatusCode)))
	if s == "" {
		s = http.StatusText(resp.StatusCode)
	}
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}

// StatusError is returned when the relay (or, on a reject, the listener)
// refuses a WebSocket upgrade or HTTP request, or does not answer in time.
// errors.Is matches exactly one of ErrUnauthorized (401), ErrForbidden
// (403), ErrEntityNotFound (404 to listen, accept or request),
// ErrNoListener (404 to connect, 502 to request), ErrTimeout (408, 504, or
// a deadline: StatusCode 0) and ErrServerError (any other status). It
// never contains a token.
type StatusError struct {
	// StatusCode is the HTTP status; 0 when the relay did not answer.
	StatusCode int
	// Reason is the relay's reason phrase (the status description), which
	// carries its diagnostic and tracking id.
	Reason string
	// Action is what was attempted (listen, connect, …).
	Action Action

	err error // cause, for a deadline
}

// Error describes the refusal: "relay: connect refused: 404 Endpoint does not exist…".
func (e *StatusError) Error() string {
	if e.StatusCode == 0 {
		if e.err != nil {
			return fmt.Sprintf("relay: %s: %s: %v", e.Action, e.Reason, e.err)
		}
		return fmt.Sprintf("relay: %s: %s", e.Action, e.Reason)
	}
	return fmt.Sprintf("relay: %s refused: %d %s", e.Action, e.StatusCode, e.Reason)
}

// Is reports whether target is the sentinel for e's status.
func (e *StatusError) Is(target error) bool { return target == e.sentinel() }

// Unwrap returns the cause of a deadline error (context.DeadlineExceeded).
func (e *StatusError) Unwrap() error { return e.err }

func (e *StatusError) sentinel() error {
	switch e.StatusCode {
	case 0, http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return ErrTimeout
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		if e.Action == ActionConnect {
			return ErrNoListener
		}
		return ErrEntityNotFound
	case http.StatusBadGateway:
		if e.Action == ActionRequest {
			return ErrNoListener
		}
	}
	return ErrServerError
}

// redactedError wraps a transport error whose text may contain the token
// (net/http puts the URL, with sb-hc-token, in *url.Error). Its text is
// computed once, without the secret, which it does not keep.
type redactedError struct {
	msg  string
	err  error
	kind error // a sentinel it also matches, or nil
}

func newRedacted(prefix string, err error, secret string) *redactedError {
	s := err.Error()
	if prefix != "" {
		s = prefix + ": " + s
	}
	return &redactedError{msg: redact(s, secret), err: err}
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.err }

func (e *redactedError) Is(target error) bool { return e.kind != nil && target == e.kind }

// redact removes secret, raw and in its query and path encodings, from s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	for _, v := range []string{url.QueryEscape(secret), url.PathEscape(secret), secret} {
		s = strings.ReplaceAll(s, v, "REDACTED")
	}
	if i := strings.Index(s, QueryToken+"="); i >= 0 {
		// Catch any other encoding of the token parameter.
		j := strings.IndexAny(s[i:], "&\" ")
		if j < 0 {
			j = len(s) - i
		}
		s = s[:i] + QueryToken + "=REDACTED" + s[i+j:]
	}
	return s
}

// redactURLErrors replaces the sb-hc-token value in every *url.Error in
// err's chain; they are fresh per request, so this changes nothing shared.
func redactURLErrors(err error) {
	for e := err; e != nil; {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = redactURL(ue.URL)
		}
		switch x := e.(type) {
		case interface{ Unwrap() error }:
			e = x.Unwrap()
		default:
			e = nil
		}
	}
}

// redactURL replaces the value of sb-hc-token in a URL string.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(url redacted)"
	}
	if q := u.Query(); q.Has(QueryToken) {
		q.Set(QueryToken, "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
