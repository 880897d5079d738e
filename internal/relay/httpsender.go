package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPSender sends HTTP requests to a Hybrid Connection in HTTP request
// mode: an ordinary request to https://{Host}/{EntityPath}[/suffix] with the
// token in the ServiceBusAuthorization header (or, by TokenPlacement, the
// sb-hc-token query parameter). Its fields must not change after first
// use; Do and Send are then safe for concurrent use.
type HTTPSender struct {
	// Credentials need the Send right (or none, for an entity that does
	// not require client authorization).
	Credentials Credentials
	// Client sends the requests (TLS configuration, timeouts); nil means
	// a shared client that keeps up to DefaultSenderIdleConns connections
	// alive (http.DefaultClient keeps 2, and a sender with more requests
	// in flight would dial for nearly every one). A caller's client should
	// raise its Transport's MaxIdleConnsPerHost likewise. Redirects are
	// never followed, whatever the client's CheckRedirect: a listener's
	// 3xx is its answer, and following it would send the relay token
	// (a custom header, which net/http forwards even to another host)
	// wherever the listener points. A client whose Transport is an
	// *http.Transport (or nil) has its small requests written and their
	// answers read on the caller's goroutine, with the Transport's dial,
	// TLS, proxy and idle settings (see inlineTransport).
	Client *http.Client
	// TokenTTL is the lifetime of each minted token; 0 means DefaultTokenTTL.
	TokenTTL time.Duration
	// Now returns the current time for token minting; nil means time.Now.
	Now func() time.Time
	// TokenPlacement is header (""), query, or auto: header first and,
	// after the relay's own 401, the query (from then on). Under auto a
	// body is sent twice only if it can be rewound (http.Request.GetBody:
	// a *bytes.Reader, *bytes.Buffer or *strings.Reader); otherwise the
	// 401 is returned.
	TokenPlacement TokenPlacement

	queryLearned atomic.Bool                 // TokenAuto saw the query form accepted
	token        atomic.Pointer[cachedToken] // the last token minted, reused until near its expiry
	clientOnce   sync.Once
	client       *http.Client // Client (or senderClient) that follows no redirect
}

// DefaultSenderIdleConns is how many idle keep-alive connections the
// HTTPSender's default client keeps to the relay.
const DefaultSenderIdleConns = 256

// senderClient is HTTPSender's default client.
var senderClient = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = DefaultSenderIdleConns
	return &http.Client{Transport: tr}
}()

// cachedToken is a minted token with its expiry and the time from which
// a fresh one is minted instead.
type cachedToken struct {
	tok       string
	exp       time.Time
	refreshAt time.Time
}

// accessToken returns a token for a request at now: the cached one until
// a quarter of its lifetime (at most 5 minutes) is left, so that a busy
// sender signs (or asks its TokenSource) a few times an hour rather than
// once per request, and a token never reaches the relay about to expire.
func (s *HTTPSender) accessToken(ctx context.Context, now time.Time) (string, error) {
	if c := s.token.Load(); c != nil && now.Before(c.refreshAt) {
		return c.tok, nil
	}
	tok, exp, err := s.Credentials.accessToken(ctx, now, s.TokenTTL)
	if err != nil {
		return "", err
	}
	if !exp.IsZero() {
		s.token.Store(&cachedToken{tok: tok, exp: exp, refreshAt: exp.Add(-min(exp.Sub(now)/4, 5*time.Minute))})
	}
	return tok, nil
}

// Do sends one request and returns the response: the listener's (with a
// Via header; Send tells them apart) or the relay's own error response (401, 403, 404, 502 no
// listener, 504 listener too slow), which the caller must close as usual.
// An error is returned only when no response arrived; a deadline gives a
// *StatusError matching ErrTimeout. Bodies of unknown length or over 64 kB
// travel through a rendezvous, which the relay handles transparently.
// Errors never contain the token.
func (s *HTTPSender) Do(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	if strings.EqualFold(method, http.MethodConnect) {
		return nil, errors.New("relay: CONNECT cannot be relayed")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	tok, err := s.accessToken(ctx, now())
	if err != nil {
		return nil, err
	}
	inQuery := s.TokenPlacement == TokenInQuery || s.queryLearned.Load()
	req, err := s.newRequest(ctx, method, suffix, query, header, body, tok, inQuery)
	if err != nil {
		return nil, err
	}
	resp, err := s.send(req, tok)
	if err != nil || !s.retryInQuery(inQuery, req, resp) {
		return resp, err
	}
	// TokenAuto: the relay refused the header form; try the query form.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if body != nil {
		if body, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("relay: request: rewinding the body: %w", err)
		}
	}
	if req, err = s.newRequest(ctx, method, suffix, query, header, body, tok, true); err != nil {
		return nil, err
	}
	if resp, err = s.send(req, tok); err == nil && (resp.StatusCode != http.StatusUnauthorized || fromListener(resp)) {
		s.queryLearned.Store(true)
	}
	return resp, err
}

// newRequest builds the request with the token in the header or, when
// inQuery is set, in the sb-hc-token query parameter.
func (s *HTTPSender) newRequest(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader, tok string, inQuery bool) (*http.Request, error) {
	uo := URLOptions{Suffix: suffix, Query: query}
	if inQuery {
		uo.Token = tok
	}
	u := s.Credentials.HTTPURL(uo)
	// The URL is set after: formatting it only for NewRequest to parse it
	// again costs as much as the rest of the request.
	req, err := http.NewRequestWithContext(ctx, method, "", body)
	if err != nil {
		// Its text may quote the URL, and with it the token.
		return nil, newRedacted("relay: request", err, tok)
	}
	req.URL, req.Host = u, u.Host
	if header != nil {
		req.Header = header.Clone()
	}
	req.Header.Del(HeaderAuthorization)
	if tok != "" && !inQuery {
		req.Header.Set(HeaderAuthorization, tok)
	}
	return req, nil
}

// send sends req; errors never contain tok.
func (s *HTTPSender) send(req *http.Request, tok string) (*http.Response, error) {
	s.clientOnce.Do(func() {
		c := s.Client
		if c == nil {
			c = senderClient
		}
		nc := *c
		nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		if nc.Transport == nil {
			nc.Transport = http.DefaultTransport
		}
		if tr, ok := nc.Transport.(*http.Transport); ok {
			nc.Transport = inlineFor(tr)
		}
		s.client = &nc
	})
	resp, err := s.client.Do(req)
	if err != nil {
		redactURLErrors(err)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &StatusError{Reason: "no answer before the deadline", Action: ActionRequest, err: newRedacted("", err, tok)}
		}
		return nil, unreachable("relay: request", req.Context(), err, tok)
	}
	return resp, nil
}

// retryInQuery reports whether, under TokenAuto, resp is the relay's own
// 401 to a token in the header and req's body can be sent again.
func (s *HTTPSender) retryInQuery(inQuery bool, req *http.Request, resp *http.Response) bool {
	return s.TokenPlacement == TokenAuto && !inQuery &&
		resp.StatusCode == http.StatusUnauthorized && !fromListener(resp) &&
		(req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
}

// Send sends one request like Do and returns the listener's response,
// which the caller must close. When the relay answered itself (no listener,
// no such hybrid connection, credentials refused, listener too slow, relay
// failure) it returns a *StatusError matching the sentinel for that answer
// (see StatusError) and closes the relay's response. A relay that cannot
// be reached gives an error matching ErrUnreachable.
func (s *HTTPSender) Send(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	resp, err := s.Do(ctx, method, suffix, query, header, body)
	if err != nil {
		return nil, err
	}
	if fromListener(resp) {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil, &StatusError{StatusCode: resp.StatusCode, Reason: reasonPhrase(resp), Action: ActionRequest}
}

// fromListener reports whether resp came from the listener rather than from
// the relay itself: the relay adds a Via header to listeners' responses
// only.
func fromListener(resp *http.Response) bool {
	return resp != nil && resp.Header.Get("Via") != ""
}
