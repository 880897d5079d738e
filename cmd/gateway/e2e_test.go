package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

const entity = "hc"

type frame struct {
	typ  relay.MessageType
	data []byte
}

// e2e is one gateway on 127.0.0.1:0 talking to an in-process emulator.
type e2e struct {
	t      *testing.T
	logs   *testlog.Buffer
	log    *slog.Logger
	emu    *emulator.Server
	gw     *gateway
	base   string
	client *http.Client // every exchange validated against openapi.yaml
	recv   chan frame
}

// testConfig is the gateway configuration of the tests: small pool, short
// timeouts, explicit credentials filled in by startE2E.
func testConfig() config.Gateway {
	return config.Gateway{
		Addr: "127.0.0.1:0", PoolSize: 2, QueueSize: 16, MaxBodyBytes: 1 << 20,
		SendTimeout: 2 * time.Second, DeliveryTimeout: 5 * time.Second, WriteTimeout: 2 * time.Second,
		DialTimeout: 2 * time.Second, PingInterval: 5 * time.Second, TokenTTL: time.Hour, TokenMaxTTL: 24 * time.Hour,
		RetryAfter: time.Second, ShutdownTimeout: 5 * time.Second, LogLevel: "debug", LogFormat: "text",
	}
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	logs := testlog.Tee(t)
	e := &e2e{t: t, logs: logs, recv: make(chan frame, 1024)}
	e.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	emu, err := emulator.New(emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      []emulator.Rule{{Name: emulatortest.KeyName, Key: emulatortest.RandomKey(), Rights: emulator.RightManage}},
		AutoCreate: true,
	}, e.log.With("component", "emulator"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		emu.Close(ctx)
	})
	e.emu = emu
	e.client = apitest.Load(t).Client(t)
	return e
}

// startGateway starts the gateway against the emulator with cfg modified by mod.
func (e *e2e) startGateway(mod func(*config.Gateway)) {
	e.t.Helper()
	cr := e.emu.Credentials(entity)
	cfg := testConfig()
	cfg.Namespace, cfg.EntityPath, cfg.KeyName, cfg.Key, cfg.Emulator = cr.Host, cr.EntityPath, cr.KeyName, cr.Key, true
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		e.t.Fatal(err)
	}
	gw, err := start(context.Background(), cfg, e.log.With("component", "gateway"), io.Discard)
	if err != nil {
		e.t.Fatal(err)
	}
	e.gw = gw
	e.base = "http://" + gw.Addr()
	e.t.Cleanup(func() { gw.shutdown() })
}

// startListener connects a listener that forwards every WebSocket message
// to e.recv and serves HTTP request mode with h. It returns a stop func.
func (e *e2e) startListener(h http.Handler) (stop func()) {
	e.t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	}
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				e.recv <- frame{typ, data}
			}
		},
		HTTPHandler: h,
		ReadLimit:   2 << 20,
		Backoff:     []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond},
	}, e.log.With("component", "test-listener"))
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		e.t.Fatalf("listener: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			<-done
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *e2e) waitReady() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.gw.pool.WaitReady(ctx); err != nil {
		e.t.Fatalf("pool not ready: %v", err)
	}
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func (e *e2e) do(method, path, contentType string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *e2e) next() frame {
	e.t.Helper()
	select {
	case f := <-e.recv:
		return f
	case <-time.After(5 * time.Second):
		e.t.Fatal("listener received nothing")
	}
	return frame{}
}

func problemCode(b []byte) string {
	var p struct{ Code string }
	json.Unmarshal(b, &p)
	return p.Code
}

func TestE2EMessagesArriveByteExact(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(nil)
	e.waitReady()

	mib := 1 << 20
	text := bytes.Repeat([]byte("héllo wörld "), mib/14+1)
	for len(text) > mib || !isUTF8(text) {
		text = text[:len(text)-1]
	}
	bin := make([]byte, mib)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	jsonMsg := `{"nested": [1, 2.0, "x"] , "s":"` + strings.Repeat("z", 1000) + `"}`
	bigJSON := []byte(`{"id":"big-1","message":"` + strings.Repeat("j", mib-len(`{"id":"big-1","message":""}`)) + `"}`)
	tests := []struct {
		name, ct  string
		body      []byte
		wantType  relay.MessageType
		wantFrame func(id string) []byte
	}{
		{"small text", "text/plain", []byte("hi ✓"), relay.MessageText, nil},
		{"1 MiB text", "text/plain; charset=utf-8", text, relay.MessageText, nil},
		{"1 MiB binary", "application/octet-stream", bin, relay.MessageBinary, nil},
		{"json", "application/json", []byte(`{"message": ` + jsonMsg + `, "id":"j-1"}`), relay.MessageText,
			func(string) []byte { return []byte(`{"id":"j-1","message":` + jsonMsg + `}`) }},
		{"1 MiB json", "application/json", bigJSON, relay.MessageText,
			func(string) []byte {
				return []byte(`{"id":"big-1","message":"` + strings.Repeat("j", mib-len(`{"id":"big-1","message":""}`)) + `"}`)
			}},
	}
	for _, tt := range tests {
		resp, b := e.do("POST", "/messages", tt.ct, tt.body)
		if resp.StatusCode != 202 {
			t.Fatalf("%s: status %d: %s", tt.name, resp.StatusCode, b)
		}
		var sent struct{ ID, Status string }
		json.Unmarshal(b, &sent)
		want := tt.body
		if tt.wantFrame != nil {
			want = tt.wantFrame(sent.ID)
		}
		f := e.next()
		if f.typ != tt.wantType || !bytes.Equal(f.data, want) {
			t.Errorf("%s: listener got %s frame of %d bytes, want %s of %d (equal %v)", tt.name, f.typ, len(f.data), tt.wantType, len(want), bytes.Equal(f.data, want))
		}
	}
	// Over the limit: 413, nothing relayed.
	resp, _ := e.do("POST", "/messages", "application/octet-stream", make([]byte, mib+1))
	if resp.StatusCode != 413 {
		t.Errorf("1 MiB + 1: status %d", resp.StatusCode)
	}
	for _, bad := range []struct{ ct, body string }{{"application/json", `{"message":null}`}, {"application/xml", "<a/>"}, {"text/plain", ""}} {
		resp, _ := e.do("POST", "/messages", bad.ct, []byte(bad.body))
		if resp.StatusCode != 400 && resp.StatusCode != 415 {
			t.Errorf("%s %q: status %d", bad.ct, bad.body, resp.StatusCode)
		}
	}
	select {
	case f := <-e.recv:
		t.Errorf("a rejected request was relayed: %d bytes", len(f.data))
	default:
	}
	// The operational endpoints, through the real server.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if resp, _ := e.do("GET", p, "", nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	_, m := e.do("GET", "/metrics", "", nil)
	for _, want := range []string{`relaygate_pool_connections{state="ready"} 2`, `relaygate_pool_messages_sent_total 5`, `relaygate_http_requests_total{method="POST",route="/messages",status="202"} 5`, `relaygate_pool_dials_total{result="ok"} 2`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func isUTF8(b []byte) bool { return strings.ToValidUTF8(string(b), "\x00") == string(b) }

func TestE2EDeliveryRequest(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.startListener(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch string(b) {
		case "fail":
			http.Error(w, "listener says no", http.StatusBadGateway)
		case "stall":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"echo":%q,"ct":%q,"id":%q}`, b, r.Header.Get("Content-Type"), r.Header.Get("X-Message-Id"))
		}
	}))
	e.startGateway(func(c *config.Gateway) { c.DeliveryTimeout = 2 * time.Second }) // generous under -race on 2 cores; the stall case waits it out
	e.waitReady()

	type delivered struct {
		ID, Status string
		Listener   struct {
			Status  int
			Headers map[string]string
			Body    string
		}
	}
	resp, b := e.do("POST", "/messages?delivery=request", "text/plain", []byte("ping"))
	var d delivered
	json.Unmarshal(b, &d)
	if resp.StatusCode != 200 || d.Status != "delivered" || d.Listener.Status != 201 ||
		d.Listener.Body != fmt.Sprintf(`{"echo":"ping","ct":"text/plain; charset=utf-8","id":%q}`, d.ID) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	// A listener's 502 is the listener's answer, not a gateway error.
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("fail"))
	d = delivered{}
	json.Unmarshal(b, &d)
	if resp.StatusCode != 200 || d.Listener.Status != 502 || !strings.Contains(d.Listener.Body, "listener says no") {
		t.Fatalf("listener error: got %d %s", resp.StatusCode, b)
	}
	// A listener too slow for the gateway's deadline: 504.
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("stall"))
	if resp.StatusCode != 504 || problemCode(b) != "timeout" {
		t.Fatalf("stalled listener: got %d %s", resp.StatusCode, b)
	}
}

func TestE2ENoListenerFailsFastThenRecovers(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startGateway(func(c *config.Gateway) { c.SendTimeout = 10 * time.Second })
	// No listener: the pool cannot connect; the gateway answers 503 at once.
	eventually(t, 5*time.Second, "readyz to report no listener", func() bool {
		resp, b := e.do("GET", "/readyz", "", nil)
		return resp.StatusCode == 503 && strings.Contains(string(b), "no listener")
	})
	start := time.Now()
	resp, b := e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 503 || problemCode(b) != "no_listener" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("without listener: %d %s", resp.StatusCode, b)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("503 took %v; it must not wait for the send timeout", d)
	}
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
	if resp.StatusCode != 503 || problemCode(b) != "no_listener" {
		t.Fatalf("request mode without listener: %d %s", resp.StatusCode, b)
	}

	stop := e.startListener(nil)
	e.waitReady()
	if resp, b := e.do("POST", "/messages", "text/plain", []byte("after")); resp.StatusCode != 202 {
		t.Fatalf("after the listener came: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "after" {
		t.Fatalf("got %q", f.data)
	}

	// The only listener restarts: 503 meanwhile, then success, no gateway restart.
	stop()
	eventually(t, 5*time.Second, "the pool to notice the listener left", func() bool {
		ok, _ := e.gw.pool.Ready()
		return !ok
	})
	start = time.Now()
	resp, b = e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 503 || time.Since(start) > time.Second {
		t.Fatalf("listener gone: %d %s after %v", resp.StatusCode, b, time.Since(start))
	}
	e.startListener(nil)
	e.waitReady()
	if resp, b := e.do("POST", "/messages", "text/plain", []byte("back")); resp.StatusCode != 202 {
		t.Fatalf("after the listener restarted: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "back" {
		t.Fatalf("got %q", f.data)
	}
}

func TestE2EPoolRecoversAfterDroppedConnections(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(nil)
	e.waitReady()
	e.emu.DropConnections()
	// Meanwhile every answer is fast, 202 or 503, until messages arrive
	// again (one written into a connection that was already dead may be
	// lost: that is what "sent" does not promise).
	n, statuses := 0, map[int]int{}
	eventually(t, 10*time.Second, "a message to arrive after the drop", func() bool {
		n++
		start := time.Now()
		resp, b := e.do("POST", "/messages", "text/plain", []byte(fmt.Sprintf("after-drop-%d", n)))
		if d := time.Since(start); d > time.Second {
			t.Errorf("answer took %v", d)
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode != 202 && resp.StatusCode != 503 {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		for {
			select {
			case f := <-e.recv:
				if strings.HasPrefix(string(f.data), "after-drop-") {
					return true
				}
			default:
				return false
			}
		}
	})
	t.Logf("statuses while recovering: %v", statuses)
	if ok, why := e.gw.pool.Ready(); !ok {
		t.Errorf("pool not ready after recovery: %s", why)
	}
}

func TestE2ETokenAuthenticatesSender(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.APIKeys = []string{"test-api-key-0123456789"} })
	e.waitReady()

	if resp, b := e.do("GET", "/token", "", nil); resp.StatusCode != 401 || problemCode(b) != "unauthenticated" {
		t.Fatalf("without key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do("POST", "/messages", "text/plain", []byte("x"), "X-API-Key", "wrong-key-0123456789"); resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	resp, b := e.do("GET", "/token?ttl=120", "", nil, "Authorization", "Bearer test-api-key-0123456789")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), e.emu.Credentials(entity).Key) {
		t.Fatal("token response contains the key")
	}
	var tok struct{ Token, URL, ExpiresAt string }
	json.Unmarshal(b, &tok)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The URL, as a browser would open it.
	ws, _, err := websocket.Dial(ctx, tok.URL, nil)
	if err != nil {
		t.Fatalf("dial the token URL: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("from the browser")); err != nil {
		t.Fatal(err)
	}
	if f := e.next(); string(f.data) != "from the browser" {
		t.Fatalf("listener got %q", f.data)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// The token with relay.Dial, in the query.
	cr := e.emu.Credentials(entity)
	cr.KeyName, cr.Key, cr.SharedAccessSignature = "", "", tok.Token
	ws, err = relay.Dial(ctx, cr, relay.DialOptions{TokenInQuery: true})
	if err != nil {
		t.Fatalf("relay.Dial with the token: %v", err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// A tampered token is refused.
	u, _ := url.Parse(tok.URL)
	q := u.Query()
	sig := regexp.MustCompile(`sig=[^&]+`)
	q.Set("sb-hc-token", sig.ReplaceAllString(q.Get("sb-hc-token"), "sig=AAAA"+url.QueryEscape("abcdefghijklmnopqrstuvwxyz0123456789ABCDE=")))
	u.RawQuery = q.Encode()
	_, hresp, err := websocket.Dial(ctx, u.String(), nil)
	if err == nil || hresp == nil || hresp.StatusCode != 401 {
		t.Fatalf("tampered token: err %v, response %v", err, hresp)
	}
}

func TestE2ERelayRefusesCredentials(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.Key = emulatortest.RandomKey() })
	eventually(t, 5*time.Second, "readyz to report the refusal", func() bool {
		resp, b := e.do("GET", "/readyz", "", nil)
		return resp.StatusCode == 503 && strings.Contains(string(b), "credentials")
	})
	resp, b := e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 502 || problemCode(b) != "relay_auth" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
	if resp.StatusCode != 502 || problemCode(b) != "relay_auth" {
		t.Fatalf("request mode: got %d %s", resp.StatusCode, b)
	}
}

// TestE2EDrainUnderLoad shuts the gateway down while clients keep posting:
// every request the server took is answered (202, or 503 draining), every
// 202's message reaches the listener, and nothing else fails.
func TestE2EDrainUnderLoad(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.PoolSize = 4 })
	e.waitReady()

	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		mu        sync.Mutex
		accepted  = map[string]bool{}
		responses int
		refused   int
	)
	progress := make(chan struct{}, 10000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				body := fmt.Sprintf("w%d-%d", w, i)
				resp, err := plain.Post(e.base+"/messages", "text/plain", strings.NewReader(body))
				if err != nil {
					// Refused, reset or EOF: the connection sat in the kernel's
					// backlog when the listening socket closed, so the server
					// never read the request. handledMessages below proves
					// that every request the server did read was answered.
					if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
						mu.Lock()
						refused++
						mu.Unlock()
						return // the server is gone: not accepted
					}
					t.Errorf("request %s: %v", body, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				responses++
				switch {
				case resp.StatusCode == 202:
					accepted[body] = true
				case resp.StatusCode == 503 && problemCode(b) == "draining":
				default:
					t.Errorf("request %s: %d %s", body, resp.StatusCode, b)
				}
				mu.Unlock()
				progress <- struct{}{}
			}
		}()
	}
	for range 100 {
		<-progress
	}
	if err := e.gw.shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d responses, %d accepted, %d refused after shutdown", responses, len(accepted), refused)
	// Every request the server handled was answered to its client.
	if handled := e.handledMessages(); handled != responses {
		t.Errorf("server handled %d POST /messages, clients got %d responses", handled, responses)
	}
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(accepted) {
		select {
		case f := <-e.recv:
			got[string(f.data)] = true
		case <-deadline:
			for id := range accepted {
				if !got[id] {
					t.Errorf("accepted %s never reached the listener", id)
				}
			}
			return
		}
	}
}

// handledMessages sums relaygate_http_requests_total for POST /messages.
func (e *e2e) handledMessages() int {
	mfs, err := e.gw.metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "relaygate_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			route := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					route = l.GetValue()
				}
			}
			if route == "/messages" {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// TestE2ELogsHoldNoSecrets runs every path that touches credentials and
// scans every component's log lines for the key, signatures and tokens.
func TestE2ELogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	const apiKey = "secret-api-key-0123456789"
	e.startGateway(func(c *config.Gateway) { c.APIKeys = []string{apiKey}; c.LogLevel = "debug" })
	e.waitReady()
	_, b := e.do("GET", "/token", "", nil, "X-API-Key", apiKey)
	var tok struct{ Token, URL string }
	json.Unmarshal(b, &tok)
	e.do("POST", "/messages", "text/plain", []byte("x"), "X-API-Key", apiKey)
	e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"), "X-API-Key", apiKey)
	e.do("POST", "/messages", "text/plain", []byte("x"), "Authorization", "Bearer wrong-"+apiKey)
	e.emu.DropConnections()
	e.waitReady()
	// A tampered token at the relay, so the emulator logs a refusal too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, strings.Replace(tok.URL, "sig%3D", "sig%3DX", 1), nil); err == nil {
		t.Error("tampered token accepted")
	}
	e.gw.shutdown()

	logs := e.logs.String()
	key := e.emu.Credentials(entity).Key
	sig := regexp.MustCompile(`sig=([^&]+)`).FindStringSubmatch(tok.Token)[1]
	unesc, _ := url.QueryUnescape(sig)
	// The key, the API key, the token, its signature as sent and decoded,
	// and the token URL.
	testlog.AssertNoSecrets(t, logs, key, apiKey, tok.Token, sig, unesc, tok.URL)
	if !strings.Contains(logs, "http request") {
		t.Fatal("captured no logs")
	}
}

// TestLocalMode runs the gateway with no credentials and pastes the
// banner's curl command into a shell.
func TestLocalMode(t *testing.T) {
	t.Parallel()
	logs := testlog.Tee(t)
	log := slog.New(slog.NewTextHandler(logs, nil))
	cfg := testConfig()
	var out bytes.Buffer
	gw, err := start(context.Background(), cfg, log, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.shutdown()
	banner := out.String()
	if !strings.Contains(banner, "LOCAL MODE") {
		t.Fatalf("banner: %s", banner)
	}
	line := regexp.MustCompile(`(?m)^\s+(curl .*)$`).FindStringSubmatch(banner)
	if line == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	cmd := exec.Command("sh", "-c", line[1]+" --silent --show-error --max-time 10")
	got, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(got, []byte("202 Accepted")) || !bytes.Contains(got, []byte(`"status":"sent"`)) {
		t.Fatalf("%s: %v\n%s", line[1], err, got)
	}
	eventually(t, 5*time.Second, "the built-in listener to log the message", func() bool {
		return strings.Contains(logs.String(), `msg="listener received message"`) && strings.Contains(logs.String(), `\"message\":\"hello\"`)
	})
}

// TestE2EOverloaded fills the only pooled connection (its listener does not
// read, so the relay's and the sockets' buffers fill up, the writer blocks
// and the queue fills) until the pool refuses: 503 overloaded with
// Retry-After, at once.
func TestE2EOverloaded(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			select { // read nothing until released
			case <-release:
			case <-ctx.Done():
				return
			}
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		},
		ReadLimit: 2 << 20,
	}, e.log.With("component", "stalled-listener"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	t.Cleanup(func() { unblock(); l.Close(); <-done })
	e.startGateway(func(c *config.Gateway) {
		c.PoolSize, c.QueueSize = 1, 1
		c.SendTimeout, c.WriteTimeout, c.PingInterval = 30*time.Second, 30*time.Second, time.Minute
	})
	e.waitReady()

	// Many 1 MiB messages at once: a few fill the sockets' buffers, one
	// blocks the writer, one waits in the queue, and the rest must be
	// refused at once rather than wait for the 30s send timeout.
	body := make([]byte, 1<<20)
	contract := apitest.Load(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	checked := false
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A plain client: validating 40 MiB against the contract only
			// adds CPU contention; one 503 is validated below.
			start := time.Now()
			req, _ := http.NewRequest("POST", e.base+"/messages", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("post: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			statuses[fmt.Sprintf("%d %s", resp.StatusCode, problemCode(b))]++
			switch {
			case resp.StatusCode == 202:
			case resp.StatusCode == 503 && problemCode(b) == "overloaded":
				if resp.Header.Get("Retry-After") != "1" {
					t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
				if d > 10*time.Second {
					t.Errorf("overloaded answer took %v", d)
				}
				if !checked {
					checked = true
					contract.Check(t, req, body, resp.StatusCode, resp.Header, b)
				}
			default:
				t.Errorf("got %d %s", resp.StatusCode, b)
			}
		}()
	}
	eventually(t, 20*time.Second, "a 503 overloaded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return statuses["503 overloaded"] > 0
	})
	unblock()
	wg.Wait()
	t.Logf("statuses of the 1 MiB posts: %v", statuses)
}
