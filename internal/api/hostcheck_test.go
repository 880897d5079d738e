package api_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/api"
)

// serveReal serves e's handler on a real http.Server on 127.0.0.1:0 and
// returns its base URL.
func serveReal(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.srv.HTTPServer(e.h)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestHostAndOriginChecks sends real requests, as a browser on another
// site or a DNS-rebound name would, to a gateway in the default no-key
// mode bound to 127.0.0.1.
func TestHostAndOriginChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) {
		c.ListenAddr = "127.0.0.1:8080"
		c.AllowedHosts = []string{"gw.example", "*.corp.example"}
		c.CORSOrigins = []string{"https://app.example"}
		c.Console = api.ConsoleHandlers{Events: okHandler, Status: okHandler}
	})
	base := serveReal(t, e)
	port := base[strings.LastIndex(base, ":")+1:]
	client := e.c.Client(t)
	tests := []struct {
		name, method, path, host, origin string
		want                             int
		wantCode                         string
	}{
		{"post from evil origin", "POST", "/messages", "", "https://evil.example", 403, "origin_not_allowed"},
		{"post from null origin", "POST", "/messages", "", "null", 403, "origin_not_allowed"},
		{"post from same host other port", "POST", "/messages", "", "http://127.0.0.1:1", 403, "origin_not_allowed"},
		{"post from https same host", "POST", "/messages", "", "https://127.0.0.1:" + port, 202, ""},
		{"post same origin", "POST", "/messages", "", "http://127.0.0.1:" + port, 202, ""},
		{"post allowed cors origin", "POST", "/messages", "", "https://app.example", 202, ""},
		{"post without origin", "POST", "/messages", "", "", 202, ""},
		{"token from evil origin", "GET", "/token", "", "https://evil.example", 403, "origin_not_allowed"},
		{"token same origin", "GET", "/token", "localhost:" + port, "http://localhost:" + port, 200, ""},
		{"token rebound host", "GET", "/token", "attacker.example:" + port, "", 421, "host_not_allowed"},
		{"events rebound host", "GET", "/console/events", "attacker.example", "", 421, "host_not_allowed"},
		{"status rebound host", "GET", "/console/status", "attacker.example:" + port, "http://attacker.example:" + port, 421, "host_not_allowed"},
		{"post rebound host same origin", "POST", "/messages", "attacker.example:" + port, "http://attacker.example:" + port, 421, "host_not_allowed"},
		{"preflight rebound host", "OPTIONS", "/messages", "attacker.example", "https://app.example", 421, "host_not_allowed"},
		{"host suffix lookalike", "GET", "/token", "localhost.attacker.example", "", 421, "host_not_allowed"},
		{"other IP when bound to loopback", "GET", "/token", "10.1.2.3:" + port, "", 421, "host_not_allowed"},
		{"localhost", "GET", "/token", "localhost", "", 200, ""},
		{"ipv6 loopback", "GET", "/token", "[::1]:" + port, "", 200, ""},
		{"allowed host", "GET", "/token", "GW.example.:443", "", 200, ""},
		{"allowed wildcard", "GET", "/token", "a.b.corp.example", "", 200, ""},
		{"healthz any host", "GET", "/healthz", "10.244.0.7:8080", "", 200, ""},
		{"readyz any host", "GET", "/readyz", "attacker.example", "https://evil.example", 200, ""},
		{"get page-less route evil origin", "GET", "/openapi.yaml", "", "https://evil.example", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.rl.messages())
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader("hello")
			} else {
				body = strings.NewReader("")
			}
			req, err := http.NewRequest(tt.method, base+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == "POST" {
				req.Header.Set("Content-Type", "text/plain")
			}
			if tt.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode == 204 && tt.want == 202 {
				t.Fatalf("unexpected 204")
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.wantCode != "" {
				if p := decodeProblem(t, resp); p.Code != tt.wantCode {
					t.Errorf("code %q, want %q", p.Code, tt.wantCode)
				}
				if n := len(e.rl.messages()); n != before {
					t.Errorf("a refused request was relayed")
				}
			}
		})
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{}`))
})

// TestHostCheckBoundToAllInterfaces: bound to every interface (behind keys),
// pod and node IPs are accepted as Host, names only when listed.
func TestHostCheckBoundToAllInterfaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) {
		c.ListenAddr = ":8080"
		c.AllowedHosts = []string{"relaygate.default.svc:8080"}
		c.APIKeys = []string{"key-one-0123456789"}
	})
	tests := []struct {
		host string
		want int
	}{
		{"10.1.2.3:8080", 200},
		{"[fd00::1]:8080", 200},
		{"relaygate.default.svc:8080", 200},
		{"relaygate.default.svc:9999", 421},
		{"relaygate.default.svc", 421},
		{"attacker.example:8080", 421},
		{"", 421},
	}
	for _, tt := range tests {
		req := newRequest("GET", "/token", tt.host)
		req.Header.Set("X-API-Key", "key-one-0123456789")
		if resp := e.c.Serve(t, e.h, req); resp.StatusCode != tt.want {
			t.Errorf("Host %q: status %d, want %d", tt.host, resp.StatusCode, tt.want)
		}
	}
}

// TestAllowedHostsWildcard: "*" turns the Host check off.
func TestAllowedHostsWildcard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.AllowedHosts = []string{"*"} })
	if resp := e.c.Serve(t, e.h, newRequest("GET", "/token", "anything.example")); resp.StatusCode != 200 {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
}

func newRequest(method, target, host string) *http.Request {
	req, _ := http.NewRequest(method, "http://example.com"+target, nil)
	req.Host = host
	return req
}
