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
// returns the listener's response, or a typed relay error when the relay
// answered itself (relay.ErrNoListener, ErrEntityNotFound, ...).
// *relay.HTTPSender implements it.
type HTTPDoer interface {
	Send(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error)
}

// RelayRequester is the Requester over an HTTPDoer. Telling the listener's
// answers from the relay's own is the doer's job (relay.HTTPSender.Send),
// so a listener's 502 can never pass for the relay's "no listener" 502.
// Safe for concurrent use if the doer is.
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
	resp, err := q.Doer.Send(ctx, http.MethodPost, "", nil, h, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readListenerBody(resp, q.MaxBodyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the listener's response: %w", relay.ErrConnLost, err)
	}
	if int64(len(body)) > q.MaxBodyBytes {
		return nil, ErrListenerBodyTooLarge
	}
	return &ListenerResponse{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// readListenerBody reads resp's body, up to limit+1 bytes: into a buffer
// of the announced length when there is one (io.ReadAll starts at 512
// bytes and grows), nil when it is empty. A body longer than announced
// (a Doer's own response) is read on as io.ReadAll would.
func readListenerBody(resp *http.Response, limit int64) ([]byte, error) {
	n := resp.ContentLength
	if n < 0 || n > limit {
		return io.ReadAll(io.LimitReader(resp.Body, limit+1))
	}
	var body []byte
	if n > 0 {
		body = make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return nil, err
		}
	}
	// Read to the end, for the connection to be reused.
	var one [1]byte
	m, err := resp.Body.Read(one[:])
	switch {
	case m == 0 && err == io.EOF:
		return body, nil
	case err != nil && err != io.EOF:
		return nil, err
	}
	rest, err := io.ReadAll(io.LimitReader(resp.Body, limit+1-n-int64(m)))
	return append(append(body, one[:m]...), rest...), err
}
