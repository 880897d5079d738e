package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

// doerFunc is a function-field api.HTTPDoer.
type doerFunc func(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error)

func (f doerFunc) Do(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	return f(ctx, method, suffix, query, header, body)
}

func TestRelayRequesterTellsListenerFromRelay(t *testing.T) {
	t.Parallel()
	respond := func(status int, via bool, body string) doerFunc {
		return func(ctx context.Context, method, suffix string, query url.Values, header http.Header, b io.Reader) (*http.Response, error) {
			h := http.Header{}
			if via {
				h.Set("Via", "1.1 ns.servicebus.windows.net")
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}, nil
		}
	}
	tests := []struct {
		name    string
		doer    doerFunc
		status  int
		wantErr error
	}{
		{"listener 502", respond(502, true, "mine"), 502, nil},
		{"listener 404", respond(404, true, "mine"), 404, nil},
		{"relay 502 no listener", respond(502, false, ""), 0, relay.ErrNotFound},
		{"relay 404", respond(404, false, ""), 0, relay.ErrNotFound},
		{"relay 401", respond(401, false, ""), 0, relay.ErrUnauthorized},
		{"relay 403", respond(403, false, ""), 0, relay.ErrForbidden},
		{"relay 504", respond(504, false, ""), 0, relay.ErrTimeout},
		{"relay 500", respond(500, false, ""), 0, relay.ErrRelayUnavailable},
		{"listener body too large", respond(200, true, strings.Repeat("x", 11)), 0, api.ErrListenerBodyTooLarge},
	}
	for _, tt := range tests {
		rq := &api.RelayRequester{Doer: tt.doer, MaxBodyBytes: 10}
		resp, err := rq.Request(context.Background(), api.ListenerRequest{ID: "a", ContentType: "text/plain", Body: []byte("x")})
		switch {
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.wantErr)
		case tt.wantErr == nil && (err != nil || resp.Status != tt.status || string(resp.Body) != "mine"):
			t.Errorf("%s: got %+v, %v", tt.name, resp, err)
		}
	}
}
