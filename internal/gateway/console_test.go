package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/console"
	"github.com/relaygate/relaygate/internal/testlog"
)

// consoleAPIKey is the API key of the console tests that need one.
const consoleAPIKey = "console-test-key-0123456789"

// localGateway is a gateway on a real http.Server on 127.0.0.1:0, in
// local mode (in-process emulator and built-in listener, as `gateway` runs
// with no credentials) unless the test gives credentials.
type localGateway struct {
	*Gateway
	base     string
	logs     *testlog.Buffer // the gateway's logs, for the secret checks
	stopOnce sync.Once
	stopErr  error
}

func startLocalGateway(t *testing.T, apiKeys ...string) *localGateway {
	t.Helper()
	return startConsoleGateway(t, func(c *config.Gateway) {
		c.APIKeys = apiKeys
		if !c.Local() {
			t.Fatal("test config is not local mode")
		}
	})
}

// startConsoleGateway starts a gateway with the tests' configuration as
// modified by mod (local mode unless mod sets credentials).
func startConsoleGateway(t *testing.T, mod func(*config.Gateway)) *localGateway {
	t.Helper()
	cfg := testConfig()
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := start(ctx, cfg, log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lg := &localGateway{Gateway: g, base: "http://" + g.Addr(), logs: logs}
	t.Cleanup(func() {
		if err := lg.stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs.String())
		}
	})
	return lg
}

func (g *localGateway) stop() error {
	g.stopOnce.Do(func() { g.stopErr = g.shutdown() })
	return g.stopErr
}

// checkNoRelayKey fails if the relay key appears in s.
func (g *localGateway) checkNoRelayKey(t *testing.T, what, s string) {
	t.Helper()
	if g.creds.Key == "" {
		t.Fatal("local mode has no relay key to look for")
	}
	if strings.Contains(s, g.creds.Key) {
		t.Errorf("the relay key appears in %s", what)
	}
}

// openEvents opens GET /console/events as a stream (not through the
// contract client, which reads whole bodies).
func openEvents(t *testing.T, ctx context.Context, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// waitData reads the stream until a data line contains want, or the
// stream or its ctx ends.
func waitData(t *testing.T, r *bufio.Reader, want string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before %q arrived: %v", want, err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, want) {
			return strings.TrimPrefix(strings.TrimSpace(line), "data: ")
		}
	}
}

// TestConsoleServedByGateway checks the console's wiring in cmd/gateway
// without a browser: the page and assets with their headers, the status,
// and a message posted to the API arriving on the SSE feed from the
// built-in listener. Every exchange but the stream is validated against
// openapi.yaml.
func TestConsoleServedByGateway(t *testing.T) {
	g := startLocalGateway(t)
	client := apitest.Load(t).Client(t)

	for _, path := range []string{"/", "/console/console.js", "/console/console.css"} {
		resp, err := client.Get(g.base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != console.ContentSecurityPolicy ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" || len(body) == 0 {
			t.Errorf("GET %s: %d, headers %v", path, resp.StatusCode, resp.Header)
		}
		g.checkNoRelayKey(t, "GET "+path, string(body))
	}
	if resp, err := client.Get(g.base + "/console/nope.js"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %v %v", resp.StatusCode, err)
	}

	resp, err := client.Get(g.base + "/console/status")
	if err != nil {
		t.Fatal(err)
	}
	var st console.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != console.ModeLocal || st.Entity != LocalEntity || st.Namespace != g.creds.Host || !st.Feed ||
		st.Pool == nil || st.Pool.Size != 2 {
		t.Errorf("status %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := openEvents(t, ctx, g.base+"/console/events", http.Header{})
	if stream.StatusCode != http.StatusOK || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", stream.StatusCode, stream.Header)
	}
	nonce := uuid.NewString()
	resp, err = client.Post(g.base+"/messages", "application/json", strings.NewReader(`{"message":{"nonce":"`+nonce+`"}}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /messages: %v %v", resp.StatusCode, err)
	}
	data := waitData(t, bufio.NewReader(stream.Body), nonce)
	var ev struct{ Kind, Type, Data, Encoding string }
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != console.KindMessage || ev.Type != "text" || ev.Encoding != "utf-8" || !strings.Contains(ev.Data, `"message":{"nonce":"`+nonce+`"}`) {
		t.Errorf("event %+v", ev)
	}

	// ?delivery=request reaches the feed too.
	resp, err = client.Post(g.base+"/messages?delivery=request", "text/plain", strings.NewReader("req-"+nonce))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /messages?delivery=request: %v %v", resp.StatusCode, err)
	}
	if data := waitData(t, bufio.NewReader(stream.Body), "req-"+nonce); !strings.Contains(data, `"kind":"request"`) {
		t.Errorf("request event %s", data)
	}

	// Shutdown ends the open stream instead of waiting for it.
	start := time.Now()
	if err := g.stop(); err != nil {
		t.Fatalf("shutdown with an open feed: %v", err)
	}
	if d := time.Since(start); d > 4500*time.Millisecond { // under the 5 s shutdown timeout: it did not wait for the stream
		t.Errorf("shutdown took %v", d)
	}
	waitData(t, bufio.NewReader(stream.Body), "{}") // the shutdown event
	g.checkNoRelayKey(t, "the logs", g.logs.String())
}

// TestConsoleNeedsAPIKey: with API keys, the status and the feed need one
// (as a header, like the rest of the API); the page itself does not.
func TestConsoleNeedsAPIKey(t *testing.T) {
	g := startLocalGateway(t, consoleAPIKey)
	client := apitest.Load(t).Client(t)
	if resp, err := client.Get(g.base + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %v %v", resp.StatusCode, err)
	}
	for _, path := range []string{"/console/status", "/console/events", "/console/events?key=" + consoleAPIKey} {
		resp, err := client.Get(g.base + path)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a key header: %v %v", path, resp.StatusCode, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, g.base+"/console/status", nil)
	req.Header.Set("X-API-Key", consoleAPIKey)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("status with X-API-Key: %v %v", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := openEvents(t, ctx, g.base+"/console/events", http.Header{"Authorization": {"Bearer " + consoleAPIKey}})
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("events with Bearer: %d", stream.StatusCode)
	}
}
