package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// statusServer answers every request with the raw status line "HTTP/1.1
// {code} {reason}", as the relay does for refused upgrades (net/http cannot
// write a custom reason phrase). It is a fake for the unit under test, the
// error mapping; the emulator tests cover the real relay.
func statusServer(t *testing.T, code int, reason string, got chan<- *http.Request) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got != nil {
			got <- r
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", code, reason)
		brw.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func credsFor(t *testing.T, rawURL string) relay.Credentials {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return relay.Credentials{Host: u.Host, EntityPath: "hc1", KeyName: "send", Key: testKey, Insecure: true}
}

func TestDialRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code      int
		want      error
		retryable bool
	}{
		{401, relay.ErrUnauthorized, false},
		{403, relay.ErrForbidden, false},
		{404, relay.ErrNoListener, true}, // to a connect; ErrEntityNotFound to a listen or request
		{408, relay.ErrTimeout, true},
		{504, relay.ErrTimeout, true},
		{500, relay.ErrServerError, true},
		{502, relay.ErrServerError, true}, // to a connect; ErrNoListener to a request
		{418, relay.ErrServerError, true},
	}
	sentinels := []error{relay.ErrUnauthorized, relay.ErrForbidden, relay.ErrEntityNotFound, relay.ErrNoListener, relay.ErrTimeout, relay.ErrServerError, relay.ErrUnreachable}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			reason := "Something happened. TrackingId:abc_G0, SystemTracker:sb://ns/hc1, Timestamp:2026-01-01T00:00:00"
			srv := statusServer(t, tt.code, reason, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			for _, inQuery := range []bool{false, true} {
				ws, err := relay.Dial(ctx, credsFor(t, srv.URL), relay.DialOptions{TokenInQuery: inQuery})
				if ws != nil {
					t.Fatal("got a connection")
				}
				var re *relay.StatusError
				if !errors.As(err, &re) || re.StatusCode != tt.code || re.Reason != reason || re.Action != relay.ActionConnect {
					t.Fatalf("got %#v, want StatusError %d %q", err, tt.code, reason)
				}
				n := 0
				for _, s := range sentinels {
					if errors.Is(err, s) {
						n++
					}
				}
				if n != 1 || !errors.Is(err, tt.want) {
					t.Errorf("matches %d sentinels, want exactly %v", n, tt.want)
				}
				if retryable(err) != tt.retryable {
					t.Errorf("retryable = %v, want %v", !tt.retryable, tt.retryable)
				}
				if !strings.Contains(err.Error(), fmt.Sprint(tt.code)) || !strings.Contains(err.Error(), "TrackingId:abc_G0") {
					t.Errorf("error %q lacks the status or reason", err)
				}
			}
		})
	}
}

func TestDialErrorsNeverContainToken(t *testing.T) {
	t.Parallel()
	// A closed port: the transport error quotes the URL, with sb-hc-token.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	now := time.Unix(1800000000, 0)
	c := relay.Credentials{Host: addr, EntityPath: "hc1", KeyName: "send", Key: testKey, Insecure: true}
	tok, _, _ := c.Token(now, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = relay.Dial(ctx, c, relay.DialOptions{TokenInQuery: true, Now: func() time.Time { return now }})
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if !retryable(err) {
		t.Errorf("connection refused is not retryable: %v", err)
	}
	for _, s := range []string{testlog.Signature(tok), url.QueryEscape(testlog.Signature(tok)), testKey} {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
			t.Fatalf("error leaks the token: %v", err)
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) && strings.Contains(ue.URL, testlog.Signature(tok)) {
		t.Fatalf("url.Error in the chain leaks the token: %s", ue.URL)
	}
	if !strings.Contains(err.Error(), "REDACTED") {
		t.Logf("error: %v", err)
	}
}

func TestDialDeadline(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answer, like a relay waiting for a listener
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hold) })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := relay.Dial(ctx, credsFor(t, srv.URL), relay.DialOptions{})
	var re *relay.StatusError
	if !errors.As(err, &re) || re.StatusCode != 0 || !errors.Is(err, relay.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a StatusError matching ErrTimeout and DeadlineExceeded", err)
	}
	if errors.Is(err, relay.ErrServerError) || !retryable(err) {
		t.Fatalf("classification of %v", err)
	}
}

func TestDialHandshake(t *testing.T) {
	t.Parallel()
	reqs := make(chan *http.Request, 2)
	big := strings.Repeat("x", 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"p2"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.Write(r.Context(), websocket.MessageText, []byte(big))
		ws.Read(r.Context()) // until the client closes
	}))
	t.Cleanup(srv.Close)
	now := time.Now()
	c := credsFor(t, srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	// Default read limit: 1 MiB passes.
	ws, err := relay.Dial(ctx, c, relay.DialOptions{
		Suffix: "sub/x", Query: url.Values{"app": {"1"}}, Header: http.Header{"X-App": {"v"}, "Servicebusauthorization": {"smuggled"}},
		Subprotocols: []string{"p1", "p2"}, ID: "my-id", TokenTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := <-reqs
	if r.URL.Path != "/$hc/hc1/sub/x" || r.URL.Query().Get("sb-hc-action") != "connect" || r.URL.Query().Get("sb-hc-id") != "my-id" ||
		r.URL.Query().Get("app") != "1" || r.URL.Query().Has("sb-hc-token") || r.Header.Get("X-App") != "v" {
		t.Errorf("got request %s %v", r.URL, r.Header)
	}
	ver := &relay.Verifier{Keys: func(string, string) []string { return []string{testKey} }, AnyHost: true}
	tk, err := ver.Verify(r.Header.Get(relay.HeaderAuthorization), c.Host, c.EntityPath)
	if err != nil {
		t.Fatalf("token in header: %v", err)
	}
	if d := tk.Expiry.Sub(now); d < 58*time.Second || d > 61*time.Second {
		t.Errorf("token lifetime %v, want about 1m", d)
	}
	if ws.Subprotocol() != "p2" {
		t.Errorf("subprotocol %q", ws.Subprotocol())
	}
	if _, data, err := ws.Read(ctx); err != nil || len(data) != len(big) {
		t.Fatalf("read 1 MiB: %d bytes, %v", len(data), err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// A small explicit read limit is enforced.
	ws, err = relay.Dial(ctx, c, relay.DialOptions{ReadLimit: 1024, TokenInQuery: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	r = <-reqs
	if r.Header.Get(relay.HeaderAuthorization) != "" || r.URL.Query().Get("sb-hc-id") == "" || r.URL.Query().Get("sb-hc-id") == "my-id" {
		t.Errorf("query token: got %s %v", r.URL, r.Header)
	}
	if _, err := ver.Verify(r.URL.Query().Get(relay.QueryToken), c.Host, c.EntityPath); err != nil {
		t.Errorf("token in query: %v", err)
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig && err == nil {
		t.Fatalf("read over the limit: %v", err)
	}
}

// retryable is the tests' classification of an error from Dial or
// HTTPSender.Do: whether the same call may succeed if made again later.
// True for every StatusError but 401 and 403 (so also for a 404 to a
// listen or request, ErrEntityNotFound), for timeouts and network errors, ErrConnLost,
// ErrUnavailable and ErrOverloaded; false for 401/403, invalid
// credentials, cancellation, ErrClosed, nil and any other error.
//
// It is not the pool's or the listener's policy: the pool redials after
// any failure and stops waiting for a ready connection only on 401/403
// (Pool.WaitReady); Listener.Run gives up on ErrEntityNotFound and on a
// first attempt refused for its credentials, and retries everything else.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var re *relay.StatusError
	if errors.As(err, &re) {
		return !errors.Is(re, relay.ErrUnauthorized) && !errors.Is(re, relay.ErrForbidden)
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, relay.ErrInvalidCredentials), errors.Is(err, relay.ErrClosed):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed),
		errors.Is(err, relay.ErrConnLost), errors.Is(err, relay.ErrUnavailable), errors.Is(err, relay.ErrOverloaded):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", relay.ErrInvalidCredentials), false},
		{context.DeadlineExceeded, true},
		{&net.OpError{Op: "dial", Err: errors.New("boom")}, true},
		{fmt.Errorf("wrapped: %w", &relay.StatusError{StatusCode: 403}), false},
		{fmt.Errorf("wrapped: %w", &relay.StatusError{StatusCode: 503}), true},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
