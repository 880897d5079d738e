package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// startSecured starts a local-mode gateway with cfg changed by mod.
func startSecured(t *testing.T, mod func(*config.Gateway)) (*Gateway, *testlog.Buffer) {
	t.Helper()
	logs := testlog.Tee(t)
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.shutdown() })
	return g, logs
}

// getAdmin GETs path on g's admin listener and requires status want.
func getAdmin(t *testing.T, g *Gateway, path string, want int) []byte {
	t.Helper()
	return get(t, "http://"+g.AdminAddr()+path, want)
}

func get(t *testing.T, url string, want int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	return b
}

// TestAdminListener: /metrics is served on GATEWAY_ADMIN_ADDR only, and
// pprof only when enabled; the probes stay on the API address.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	g, _ := startSecured(t, func(c *config.Gateway) { c.AdminAddr = "127.0.0.1:0" })
	if g.AdminAddr() == "" || g.AdminAddr() == g.Addr() {
		t.Fatalf("admin address %q, API %q", g.AdminAddr(), g.Addr())
	}
	api := "http://" + g.Addr()
	get(t, api+"/healthz", 200)
	get(t, api+"/readyz", 200)
	get(t, api+"/metrics", 404)
	if m := getAdmin(t, g, "/metrics", 200); !strings.Contains(string(m), "relaygate_http_requests_total") {
		t.Errorf("admin /metrics lacks the request counter")
	}
	getAdmin(t, g, "/debug/pprof/", 404)
	getAdmin(t, g, "/healthz", 404)

	p, _ := startSecured(t, func(c *config.Gateway) { c.AdminAddr, c.Pprof = "127.0.0.1:0", true })
	getAdmin(t, p, "/debug/pprof/", 200)
	getAdmin(t, p, "/debug/pprof/goroutine?debug=1", 200)

	off, _ := startSecured(t, nil)
	if off.AdminAddr() != "" {
		t.Errorf("admin listener %q without GATEWAY_ADMIN_ADDR", off.AdminAddr())
	}
}

// TestLocalModeTokenCannotListen: in local mode GET /token signs with a
// Send-only rule, so its token opens a sender but not a listener.
func TestLocalModeTokenCannotListen(t *testing.T) {
	t.Parallel()
	g, logs := startSecured(t, nil)
	b := get(t, "http://"+g.Addr()+"/token", 200)
	var tok struct{ Token, Resource, KeyName, URL string }
	if err := json.Unmarshal(b, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.KeyName != localSendRule {
		t.Errorf("keyName %q, want %q", tok.KeyName, localSendRule)
	}
	listen := g.creds
	listen.KeyName, listen.Key = "", ""
	u := listen.WebSocketURL(relay.ActionListen, relay.URLOptions{Token: tok.Token}).String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err == nil {
		ws.CloseNow()
		t.Fatal("a /token token opened a listener")
	}
	if resp == nil || (resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized) {
		t.Fatalf("listen with a /token token: %v, want 401 or 403", err)
	}
	sender, _, err := websocket.Dial(ctx, tok.URL, nil)
	if err != nil {
		t.Fatalf("the same token as a sender: %v", err)
	}
	sender.Close(websocket.StatusNormalClosure, "")
	if strings.Contains(logs.String(), "suggests more than the Send right") {
		t.Error("local mode warned about its own rule")
	}
}

// TestBroadRuleWarning: a rule named like Manage or Listen draws a
// warning at startup.
func TestBroadRuleWarning(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"RootManageSharedAccessKey": true, "listen": true, "SendListen": true, "manager": true,
		"send": false, "gateway-send": false, "": false,
	} {
		if got := ruleSuggestsMoreThanSend(name); got != want {
			t.Errorf("ruleSuggestsMoreThanSend(%q) = %v, want %v", name, got, want)
		}
	}
	e := newE2E(t) // the emulator's DevRule is RootManageSharedAccessKey
	e.startGateway(nil)
	if !strings.Contains(e.logs.String(), "suggests more than the Send right") || !strings.Contains(e.logs.String(), "key_name=RootManageSharedAccessKey") {
		t.Errorf("no warning about RootManageSharedAccessKey in the log")
	}
}

// TestMaxConnsKeepsHealthzAnswered: with GATEWAY_MAX_CONNS=20 held by
// idle keep-alive clients, /healthz from new clients is still answered
// and the gateway never holds more than 20 connections.
func TestMaxConnsKeepsHealthzAnswered(t *testing.T) {
	t.Parallel()
	g, _ := startSecured(t, func(c *config.Gateway) { c.MaxConns = 20 })
	var idle []net.Conn
	for range 20 {
		c := dialRaw(t, g.Addr())
		if err := rawGet(c, "/healthz"); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	for i := range 5 {
		if err := rawGet(dialRaw(t, g.Addr()), "/healthz"); err != nil {
			t.Fatalf("client %d at the cap: %v", i, err)
		}
		if n := g.ln.Open(); n > 20 {
			t.Fatalf("%d connections open, cap 20", n)
		}
	}
	// Idle connections went first, the longest-idle ones: at least one of
	// the ten oldest is closed (exactly which depends on when the server
	// saw each connection go idle, which scheduling under load can reorder).
	closed := 0
	for _, c := range idle[:10] {
		if rawGet(c, "/healthz") != nil {
			closed++
		}
	}
	if closed == 0 {
		t.Error("none of the longest-idle connections was closed")
	}
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// rawGet sends one keep-alive request on c and reads a 200 response.
func rawGet(c net.Conn, path string) error {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
