package api_test

import (
	"context"
	"errors"
	"fmt"
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

func (f doerFunc) Send(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	return f(ctx, method, suffix, query, header, body)
}

// TestRelayRequester: the listener's answers, whatever their status, are
// returned; the relay's own (typed errors from relay.HTTPSender.Send) are
// passed on for problemFor.
func TestRelayRequester(t *testing.T) {
	t.Parallel()
	respond := func(status int, body string) doerFunc {
		return func(ctx context.Context, method, suffix string, query url.Values, header http.Header, b io.Reader) (*http.Response, error) {
			h := http.Header{"Via": {"1.1 ns.servicebus.windows.net"}}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}, nil
		}
	}
	fail := func(err error) doerFunc {
		return func(context.Context, string, string, url.Values, http.Header, io.Reader) (*http.Response, error) {
			return nil, err
		}
	}
	tests := []struct {
		name    string
		doer    doerFunc
		status  int
		wantErr error
	}{
		{"listener 502", respond(502, "mine"), 502, nil},
		{"listener 404", respond(404, "mine"), 404, nil},
		{"relay 502 no listener", fail(&relay.StatusError{StatusCode: 502, Action: relay.ActionRequest}), 0, relay.ErrNoListener},
		{"relay 404", fail(&relay.StatusError{StatusCode: 404, Action: relay.ActionRequest}), 0, relay.ErrEntityNotFound},
		{"relay unreachable", fail(fmt.Errorf("dial: %w", relay.ErrUnreachable)), 0, relay.ErrUnreachable},
		{"listener body too large", respond(200, strings.Repeat("x", 11)), 0, api.ErrListenerBodyTooLarge},
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

// TestRelayRequesterBodyLengths: the listener's body arrives whole
// whatever its announced length says, and the limit holds.
func TestRelayRequesterBodyLengths(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		body    string
		length  int64
		wantErr error
	}{
		{"", 0, nil},
		{"mine", 4, nil},
		{"mine", -1, nil},
		{"mine", 2, nil}, // a Doer that announces less than it has
		{"0123456789", 10, nil},
		{"0123456789x", 11, api.ErrListenerBodyTooLarge},
		{"0123456789x", 3, api.ErrListenerBodyTooLarge},
	} {
		doer := doerFunc(func(context.Context, string, string, url.Values, http.Header, io.Reader) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: tt.length, Body: io.NopCloser(strings.NewReader(tt.body))}, nil
		})
		rq := &api.RelayRequester{Doer: doer, MaxBodyBytes: 10}
		resp, err := rq.Request(context.Background(), api.ListenerRequest{ID: "a", ContentType: "text/plain", Body: []byte("x")})
		switch {
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%q (length %d): err %v, want %v", tt.body, tt.length, err, tt.wantErr)
		case tt.wantErr == nil && (err != nil || string(resp.Body) != tt.body):
			t.Errorf("%q (length %d): got %+v, %v", tt.body, tt.length, resp, err)
		}
	}
}
