package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/relaygate/relaygate/internal/relay"
)

// HTTPDoer sends one request through the relay's HTTP request mode and
// returns the listener's or the relay's response. *relay.HTTPSender
// implements it.
type HTTPDoer interface {
	Do(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error)
}

// RelayRequester is the Requester over an HTTPDoer. It tells the
// listener's answers (relay.FromListener) from the relay's own error
// responses, which it turns into errors wrapping relay's sentinels, so a
// listener's 502 can never pass for the relay's "no listener" 502. Safe for
// concurrent use if the doer is.
type RelayRequester struct {
	Doer HTTPDoer
	// MaxBodyBytes caps the listener's response body (ErrListenerBodyTooLarge above it).
	MaxBodyBytes int64
}

// Request POSTs req to the listener and returns its answer.
func (q *RelayRequester) Request(ctx context.Context, req ListenerRequest) (*ListenerResponse, error) {
	h := http.Header{}
	h.Set("Content-Type", req.ContentType)
	h.Set("X-Message-Id", req.ID)
	if req.RequestID != "" {
		h.Set("X-Request-Id", req.RequestID)
	}
	injectTraceContext(ctx, h)
	resp, err := q.Doer.Do(ctx, http.MethodPost, "", nil, h, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if !relay.FromListener(resp) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, relayStatusError(resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, q.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the listener's response: %w", relay.ErrConnLost, err)
	}
	if int64(len(body)) > q.MaxBodyBytes {
		return nil, ErrListenerBodyTooLarge
	}
	return &ListenerResponse{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// relayStatusError maps a response the relay produced itself (no Via) to
// the relay sentinel that problemFor understands.
func relayStatusError(status int) error {
	var sentinel error
	switch status {
	case http.StatusUnauthorized:
		sentinel = relay.ErrUnauthorized
	case http.StatusForbidden:
		sentinel = relay.ErrForbidden
	case http.StatusNotFound, http.StatusBadGateway:
		// 502 "could not be routed to any listener"; 404 no such entity or listener.
		sentinel = relay.ErrNotFound
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		sentinel = relay.ErrTimeout
	default:
		sentinel = relay.ErrRelayUnavailable
	}
	return fmt.Errorf("%w: the relay answered %d", sentinel, status)
}
