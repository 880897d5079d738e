package console

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/relay"
)

// fakePool is a PoolStatser returning a fixed snapshot.
type fakePool struct{ stats relay.PoolStats }

func (p fakePool) Stats() relay.PoolStats { return p.stats }

func get(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPageServesEmbeddedFilesWithSecurityHeaders(t *testing.T) {
	c := New(Config{})
	srv := httptest.NewServer(c.Page())
	t.Cleanup(srv.Close)
	tests := []struct {
		name, path, file, contentType string
	}{
		{"index", PathIndex, "static/index.html", "text/html; charset=utf-8"},
		{"script", PathScript, "static/console.js", "text/javascript; charset=utf-8"},
		{"style", PathStyle, "static/console.css", "text/css; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := fs.ReadFile(static, tt.file)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := get(t, srv.URL+tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("body is not the embedded %s", tt.file)
			}
			h := resp.Header
			for k, v := range map[string]string{
				"Content-Type":            tt.contentType,
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-cache",
			} {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			etag := h.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			resp, body = get(t, srv.URL+tt.path, http.Header{"If-None-Match": {etag}})
			if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
				t.Errorf("revalidation: status %d with %d bytes, want 304 and none", resp.StatusCode, len(body))
			}
		})
	}
	if resp, _ := get(t, srv.URL+"/console/other.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: status %d, want 404", resp.StatusCode)
	}
}

func TestContentSecurityPolicyIsStrict(t *testing.T) {
	directives := map[string]string{}
	for _, d := range strings.Split(ContentSecurityPolicy, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	for name, want := range map[string]string{
		"default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "connect-src": "'self'",
		"frame-ancestors": "'none'", "object-src": "'none'", "base-uri": "'none'",
		"require-trusted-types-for": "'script'",
	} {
		if got := directives[name]; got != want {
			t.Errorf("%s %q, want %q", name, got, want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe-") || strings.Contains(ContentSecurityPolicy, "data:") ||
		strings.Contains(ContentSecurityPolicy, "*") {
		t.Errorf("policy allows too much: %s", ContentSecurityPolicy)
	}
}

// TestAssetsAreSelfContained checks what the CSP would otherwise only
// catch in a browser: no external resource, no inline script or style, no
// HTML sinks, no storage of the API key.
func TestAssetsAreSelfContained(t *testing.T) {
	read := func(name string) string {
		b, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html, js, css := read("index.html"), read("console.js"), read("console.css")
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	for name, s := range map[string]string{"index.html": html, "console.css": css} {
		if m := external.FindString(s); m != "" {
			t.Errorf("%s references %q", name, m)
		}
	}
	if m := regexp.MustCompile(`(?i)fetch\(\s*['"]https?:|new WebSocket|EventSource\(`).FindString(js); m != "" {
		t.Errorf("console.js reaches out: %q", m)
	}
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	if len(scripts) != 1 || !strings.Contains(scripts[0][1], `src="/console/console.js"`) || strings.TrimSpace(scripts[0][2]) != "" {
		t.Errorf("index.html must load exactly /console/console.js and have no inline script: %q", scripts)
	}
	if !strings.Contains(html, `<link rel="stylesheet" href="/console/console.css">`) {
		t.Error("index.html does not load /console/console.css")
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<style`), regexp.MustCompile(`(?i)\sstyle=`), regexp.MustCompile(`(?i)\son[a-z]+=`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := bad.FindString(html); m != "" {
			t.Errorf("index.html has inline code or style: %q", m)
		}
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
		"localStorage", "sessionStorage", "indexedDB", "document.cookie", "console.log"} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
	// Every element id the script looks up exists in the page.
	for _, m := range regexp.MustCompile(`\$\('([a-z-]+)'\)`).FindAllStringSubmatch(js, -1) {
		if !strings.Contains(html, `id="`+m[1]+`"`) {
			t.Errorf("console.js uses #%s, which index.html lacks", m[1])
		}
	}
}

func TestStatus(t *testing.T) {
	c := New(Config{
		Target:       Target{Mode: ModeLocal, Namespace: "127.0.0.1:9999", Entity: "hc"},
		Pool:         fakePool{relay.PoolStats{Size: 4, Ready: 3, Connecting: 1, Queued: 2}},
		Feed:         NewFeed(FeedConfig{}, discard()),
		MaxBodyBytes: 1 << 20,
	})
	srv := httptest.NewServer(c.Status())
	t.Cleanup(srv.Close)
	resp, body := get(t, srv.URL, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"mode": "local", "namespace": "127.0.0.1:9999", "entity": "hc", "feed": true, "maxBodyBytes": float64(1 << 20),
		"pool": map[string]any{"size": float64(4), "ready": float64(3), "connecting": float64(1), "backoff": float64(0),
			"retiring": float64(0), "queued": float64(2)},
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("got %s\nwant %s", gj, wj)
	}

	// Without a pool and a feed (Azure mode): no pool member, feed false,
	// and no events handler to mount.
	c = New(Config{Target: Target{Mode: ModeAzure, Namespace: "ns.servicebus.windows.net", Entity: "hc"}})
	rec := httptest.NewRecorder()
	c.Status().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathStatus, nil))
	if b := rec.Body.String(); strings.Contains(b, "pool") || !strings.Contains(b, `"feed":false`) {
		t.Errorf("azure status: %s", b)
	}
	if c.Events() != nil {
		t.Error("Events is not nil without a feed")
	}
}

func TestModeOf(t *testing.T) {
	tests := []struct {
		name  string
		local bool
		creds relay.Credentials
		want  string
	}{
		{"local", true, relay.Credentials{Insecure: true}, ModeLocal},
		{"standalone emulator", false, relay.Credentials{Insecure: true}, ModeEmulator},
		{"azure", false, relay.Credentials{Host: "ns.servicebus.windows.net"}, ModeAzure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ModeOf(tt.local, tt.creds); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
