package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// deliveredDoc is the 200 body of a request-mode POST /messages.
type deliveredDoc struct {
	ID, Status string
	Listener   struct {
		Status  int
		Headers map[string]string
		Body    string
	}
}

// startHTTPOnlyListener connects a relay.Listener that serves only HTTP
// request mode (like Microsoft's hyco-https) and counts WebSocket accepts,
// which a request-only gateway must never cause.
func (e *e2e) startHTTPOnlyListener(h http.Handler) (accepts *atomic.Int64) {
	e.t.Helper()
	accepts = new(atomic.Int64)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		AcceptHandler: func(*relay.AcceptRequest) (bool, int, string) {
			accepts.Add(1)
			return false, http.StatusNotImplemented, "HTTP only"
		},
		ConnHandler: func(context.Context, *relay.ListenerConn) {},
		HTTPHandler: h,
		Backoff:     []time.Duration{0, 10 * time.Millisecond},
	}, e.log.With("component", "http-only-listener"))
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	e.t.Cleanup(func() { l.Close(); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		e.t.Fatalf("listener: %v", err)
	}
	return accepts
}

// readyz returns /readyz's status and problem detail.
func (e *e2e) readyz() (int, string) {
	e.t.Helper()
	resp, b := e.do("GET", "/readyz", "", nil)
	var p struct{ Detail string }
	json.Unmarshal(b, &p)
	return resp.StatusCode, p.Detail
}

// TestRequestModeGateway: with GATEWAY_MODE=request the gateway dials no
// WebSocket, /readyz follows request-mode reachability, every POST
// /messages is a request whose answer comes back, ?delivery=send is a
// clear 400, and the console shows the mode.
func TestRequestModeGateway(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startGateway(func(c *config.Gateway) { c.Mode = config.GatewayModeRequest })
	if e.gw.pool != nil {
		t.Fatal("request-only gateway built a sender pool")
	}

	// No listener yet: not ready, and the probe says why.
	testlog.WaitFor(t, "readyz: no listener", func() bool {
		code, detail := e.readyz()
		return code == 503 && detail == "request mode: no listener connected"
	})

	var seen sync.Map // message id → body, as the listener got it
	accepts := e.startHTTPOnlyListener(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(api.HeaderProbe) != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		seen.Store(r.Header.Get("X-Message-Id"), string(b))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "got %s %s", r.Method, b)
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.gw.reqOnly.WaitReady(ctx); err != nil {
		t.Fatalf("request mode not ready with a listener: %v", err)
	}
	if code, detail := e.readyz(); code != 200 {
		t.Fatalf("readyz with a listener: %d %s", code, detail)
	}

	for _, tc := range []struct{ ct, body, want string }{
		{"application/json", `{"id":"m-json","message":{"n":1}}`, `got POST {"id":"m-json","message":{"n":1}}`},
		{"text/plain", "plain text", "got POST plain text"},
		{"application/octet-stream", "bytes", "got POST bytes"},
	} {
		resp, b := e.do("POST", "/messages", tc.ct, []byte(tc.body))
		var d deliveredDoc
		json.Unmarshal(b, &d)
		if resp.StatusCode != 200 || d.Status != "delivered" || d.Listener.Status != 200 || d.Listener.Body != tc.want {
			t.Fatalf("POST %s: got %d %s, want 200 delivered %q", tc.ct, resp.StatusCode, b, tc.want)
		}
		if _, ok := seen.Load(d.ID); !ok {
			t.Errorf("the listener did not see message %s", d.ID)
		}
	}
	resp, b := e.do("POST", "/messages?delivery=send", "text/plain", []byte("x"))
	if resp.StatusCode != 400 || problemCode(b) != "invalid_argument" || !strings.Contains(string(b), "request mode only") {
		t.Fatalf("delivery=send: got %d %s, want 400 invalid_argument", resp.StatusCode, b)
	}

	resp, b = e.do("GET", "/console/status", "", nil)
	var st struct {
		Delivery string
		Pool     any
	}
	json.Unmarshal(b, &st)
	if resp.StatusCode != 200 || st.Delivery != "request" || st.Pool != nil {
		t.Fatalf("console status: %d %s, want delivery request and no pool", resp.StatusCode, b)
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the listener was asked to accept %d WebSocket senders", n)
	}
	if strings.Contains(e.logs.String(), "accept sent") {
		t.Fatal("the emulator sent an accept command")
	}
}

// TestRequestModeGatewayWithHycoHTTPS runs the gateway in request-only
// mode against Microsoft's hyco-https listener (Node), started first:
// every message arrives and the listener's answer comes back, and the
// listener never gets an accept (which would crash it, §11.2).
func TestRequestModeGatewayWithHycoHTTPS(t *testing.T) {
	t.Parallel()
	bin := emulatortest.RequireNode(t)
	e := newE2E(t)
	lc := e.emu.ListenerCredentials(entity)
	node := emulatortest.StartNode(t, bin, "https-listener.js", lc.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), lc)
	node.WaitLine(t, "ready", 10*time.Second)
	testlog.WaitFor(t, "hyco-https registered", func() bool { return e.emu.ListenerCount(entity) == 1 })

	e.startGateway(func(c *config.Gateway) { c.Mode = config.GatewayModeRequest })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.gw.reqOnly.WaitReady(ctx); err != nil {
		t.Fatalf("request mode not ready against hyco-https: %v", err)
	}
	node.WaitLine(t, "request: OPTIONS /"+entity, 10*time.Second) // the probe

	const n = 20
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("message %d ✓", i)
	}
	bodies[n-1] = strings.Repeat("large ", 150_000/6) // over 64 kB: request and response through a rendezvous
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for _, body := range bodies {
		wg.Go(func() {
			resp, b := e.do("POST", "/messages", "text/plain", []byte(body))
			var d deliveredDoc
			json.Unmarshal(b, &d)
			if resp.StatusCode != 200 || d.Listener.Status != 201 || d.Listener.Body != body ||
				d.Listener.Headers["X-Echo-Method"] != "POST" {
				errs <- fmt.Sprintf("got %d %.200s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for range n {
		node.WaitLine(t, "request: POST /"+entity, 10*time.Second)
	}
	select {
	case <-node.Done():
		t.Fatalf("hyco-https exited: %v\n%s", node.Err(), node.Stderr())
	default:
	}
	if code, detail := e.readyz(); code != 200 {
		t.Fatalf("readyz: %d %s", code, detail)
	}
	testlog.AssertNoSecrets(t, e.logs.String(), lc.Key, "sig=")
}

// TestPoolModeCrashesHycoHTTPS documents why request-only mode exists: a
// pool-mode gateway's sender WebSockets make the relay send hyco-https an
// accept command, which crashes it (ReferenceError: Extensions is not
// defined, §11.2).
func TestPoolModeCrashesHycoHTTPS(t *testing.T) {
	t.Parallel()
	bin := emulatortest.RequireNode(t)
	e := newE2E(t)
	lc := e.emu.ListenerCredentials(entity)
	node := emulatortest.StartNode(t, bin, "https-listener.js", lc.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), lc)
	node.WaitLine(t, "ready", 10*time.Second)
	testlog.WaitFor(t, "hyco-https registered", func() bool { return e.emu.ListenerCount(entity) == 1 })

	e.startGateway(nil) // GATEWAY_MODE=pool
	select {
	case <-node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("hyco-https survived a pool-mode gateway's sender WebSockets")
	}
	if !strings.Contains(node.Stderr(), "Extensions is not defined") {
		t.Fatalf("hyco-https exited (%v) without the known crash:\n%s", node.Err(), node.Stderr())
	}
}
