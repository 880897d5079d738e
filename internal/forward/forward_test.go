package forward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// fakeConn is a scripted Conn: it returns msgs in order, then io.EOF.
type fakeConn struct {
	id   string
	msgs []fakeMsg
	i    int
}

type fakeMsg struct {
	typ  relay.MessageType
	data []byte
}

func (c *fakeConn) ID() string { return c.id }

func (c *fakeConn) Read(ctx context.Context) (relay.MessageType, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if c.i >= len(c.msgs) {
		return 0, nil, io.EOF
	}
	m := c.msgs[c.i]
	c.i++
	return m.typ, m.data, nil
}

var fixedTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newHandler(t *testing.T, cfg Config, out io.Writer) *Handler {
	t.Helper()
	cfg.Now = func() time.Time { return fixedTime }
	h, err := New(cfg, out, testlog.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func decodeLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestServeConnPrints(t *testing.T) {
	t.Parallel()
	var out testlog.Buffer
	h := newHandler(t, Config{}, &out)
	c := &fakeConn{id: "c1", msgs: []fakeMsg{
		{relay.MessageText, []byte(`{"message":"hi"}`)},
		{relay.MessageBinary, []byte{0, 1, 0xff}},
		{relay.MessageText, []byte{'a', 0xff}}, // invalid UTF-8 stays lossless
		{relay.MessageText, []byte{}},
	}}
	h.ServeConn(t.Context(), c)

	want := []string{
		`{"time":"2026-11-26T12:00:00Z","connection":"c1","type":"text","text":"{\"message\":\"hi\"}"}`,
		`{"time":"2026-11-26T12:00:00Z","connection":"c1","type":"binary","base64":"AAH/"}`,
		`{"time":"2026-11-26T12:00:00Z","connection":"c1","type":"text","base64":"Yf8="}`,
		`{"time":"2026-11-26T12:00:00Z","connection":"c1","type":"text","text":""}`,
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestServeConnConcurrentLinesWhole(t *testing.T) {
	t.Parallel()
	var out testlog.Buffer
	h := newHandler(t, Config{}, &out)
	const conns, msgs = 8, 50
	var wg sync.WaitGroup
	for i := range conns {
		c := &fakeConn{id: fmt.Sprint("c", i)}
		for j := range msgs {
			c.msgs = append(c.msgs, fakeMsg{relay.MessageText, []byte(strings.Repeat("x", 1000+j))})
		}
		wg.Go(func() { h.ServeConn(t.Context(), c) })
	}
	wg.Wait()
	lines := decodeLines(t, out.String())
	if len(lines) != conns*msgs {
		t.Fatalf("got %d lines, want %d", len(lines), conns*msgs)
	}
	next := map[string]int{}
	for _, l := range lines {
		id := l["connection"].(string)
		if n := len(l["text"].(string)); n != 1000+next[id] {
			t.Fatalf("connection %s: got message of %d bytes, want %d (order per connection)", id, n, 1000+next[id])
		}
		next[id]++
	}
}

// recorded is one request the fake local service saw.
type recorded struct {
	method, path, query, host string
	header                    http.Header
	body                      []byte
}

// localService is a real HTTP server on 127.0.0.1 recording requests and
// answering with fn.
func localService(t *testing.T, fn func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []recorded) {
	t.Helper()
	var mu sync.Mutex
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), body})
		mu.Unlock()
		if fn != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			fn(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), reqs...)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestServeConnForwards(t *testing.T) {
	t.Parallel()
	srv, reqs := localService(t, func(w http.ResponseWriter, r *http.Request) {
		if string(r.Header.Get(HeaderMessageType)) == "binary" {
			http.Error(w, "nope", http.StatusInternalServerError) // logged, not fatal
		}
	})
	var out testlog.Buffer
	h := newHandler(t, Config{Target: mustURL(t, srv.URL+"/hook?k=v")}, &out)
	c := &fakeConn{id: "c9", msgs: []fakeMsg{
		{relay.MessageText, []byte("one")},
		{relay.MessageBinary, []byte{1, 2, 3}},
		{relay.MessageText, []byte("three")},
	}}
	h.ServeConn(t.Context(), c)

	got := reqs()
	if len(got) != 3 {
		t.Fatalf("local service got %d requests, want 3", len(got))
	}
	want := []struct{ body, ct, typ string }{
		{"one", "text/plain; charset=utf-8", "text"},
		{"\x01\x02\x03", "application/octet-stream", "binary"},
		{"three", "text/plain; charset=utf-8", "text"},
	}
	for i, w := range want {
		r := got[i]
		if r.method != http.MethodPost || r.path != "/hook" || r.query != "k=v" || string(r.body) != w.body ||
			r.header.Get("Content-Type") != w.ct || r.header.Get(HeaderMessageType) != w.typ || r.header.Get(HeaderConnection) != "c9" {
			t.Errorf("request %d: got %s %s?%s body=%q headers=%v, want POST /hook?k=v body=%q type=%s", i, r.method, r.path, r.query, r.body, r.header, w.body, w.typ)
		}
	}
	if n := len(decodeLines(t, out.String())); n != 3 {
		t.Errorf("printed %d lines, want 3 (messages are printed in forward mode too)", n)
	}
}

func TestServeConnForwardUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close() // nothing listens there any more
	var out, logs testlog.Buffer
	const secret = "s3cr3t-function-key"
	h, err := New(Config{Target: mustURL(t, dead+"/hook?code="+secret)}, &out, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeConn{id: "c", msgs: []fakeMsg{{relay.MessageText, []byte("a")}, {relay.MessageText, []byte("b")}}}
	h.ServeConn(t.Context(), c)
	if n := len(decodeLines(t, out.String())); n != 2 {
		t.Errorf("printed %d lines, want 2: a failed POST must not stop the connection", n)
	}
	if !strings.Contains(logs.String(), "forward message") {
		t.Errorf("the failed POST was not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs contain the forward URL's query:\n%s", logs.String())
	}
}

func TestShown(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://127.0.0.1:3000":                "http://127.0.0.1:3000",
		"https://fn.example/api/x?code=SECRET": "https://fn.example/api/x?…",
		"http://svc/a%20b":                     "http://svc/a%20b",
	} {
		if got := Shown(mustURL(t, in)); got != want {
			t.Errorf("Shown(%s): got %s, want %s", in, got, want)
		}
	}
}

func TestServeHTTPReceipt(t *testing.T) {
	t.Parallel()
	var out testlog.Buffer
	h := newHandler(t, Config{MaxBodyBytes: 1000}, &out)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	resp, err := http.Post(srv.URL+"/hc/orders?x=1", "application/json", strings.NewReader(`{"message":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	var rc Receipt
	err = json.NewDecoder(resp.Body).Decode(&rc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if rc.Status != "received" || rc.Method != "POST" || rc.Target != "/hc/orders?x=1" || rc.Bytes != 16 || rc.Request == "" {
		t.Errorf("receipt: got %+v", rc)
	}
	lines := decodeLines(t, out.String())
	if len(lines) != 1 || lines[0]["type"] != "http" || lines[0]["method"] != "POST" || lines[0]["text"] != `{"message":"hi"}` ||
		lines[0]["request"] != rc.Request || lines[0]["target"] != "/hc/orders?x=1" {
		t.Errorf("lines: got %v", lines)
	}

	resp, err = http.Post(srv.URL+"/hc", "application/octet-stream", bytes.NewReader(make([]byte, 1001)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("oversize body: got %d %s, want 413 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := len(decodeLines(t, out.String())); n != 1 {
		t.Errorf("a rejected request was printed: %d lines", n)
	}
}

func TestServeHTTPProxies(t *testing.T) {
	t.Parallel()
	svc, reqs := localService(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/base/echo":
			w.Header().Set("X-Echo-Len", fmt.Sprint(r.ContentLength))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusCreated)
			io.Copy(w, r.Body)
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such thing")
		}
	})
	var out testlog.Buffer
	h := newHandler(t, Config{Target: mustURL(t, svc.URL+"/base"), StripPrefix: "/hc"}, &out)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	body := bytes.Repeat([]byte("0123456789"), 20_000) // 200 kB
	resp, err := http.Post(srv.URL+"/hc/echo?q=1", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(got, body) || resp.Header.Get("X-Echo-Len") != "200000" {
		t.Errorf("echo: got %d, %d bytes, X-Echo-Len=%q; want 201 and the body back", resp.StatusCode, len(got), resp.Header.Get("X-Echo-Len"))
	}
	r := reqs()[0]
	if r.path != "/base/echo" || r.query != "q=1" || r.host != svc.Listener.Addr().String() || r.header.Get("X-Forwarded-For") == "" {
		t.Errorf("service saw %s?%s host=%s XFF=%q", r.path, r.query, r.host, r.header.Get("X-Forwarded-For"))
	}

	resp, err = http.Get(srv.URL + "/hc/missing")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || string(got) != "no such thing" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("404: got %d %q %q, want the service's 404 as is", resp.StatusCode, got, resp.Header.Get("Content-Type"))
	}
	if out.String() != "" {
		t.Errorf("forwarded requests are not printed, got %q", out.String())
	}
}

func TestServeHTTPProxyErrors(t *testing.T) {
	t.Parallel()
	// A service that never answers until the test ends: the timeout fires.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tests := []struct {
		name   string
		target string
		status int
		code   string
	}{
		{"unreachable", deadURL, http.StatusBadGateway, "forward_failed"},
		{"timeout", slow.URL, http.StatusGatewayTimeout, "forward_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHandler(t, Config{Target: mustURL(t, tt.target), Timeout: 200 * time.Millisecond}, io.Discard)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			resp, err := http.Get(srv.URL + "/hc")
			if err != nil {
				t.Fatal(err)
			}
			var p map[string]any
			json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if resp.StatusCode != tt.status || p["code"] != tt.code || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("got %d %v, want %d code %s", resp.StatusCode, p, tt.status, tt.code)
			}
			if p["type"] != "urn:relaygate:problem:"+tt.code {
				t.Errorf("type: got %v, want urn:relaygate:problem:%s", p["type"], tt.code)
			}
			if d, _ := p["detail"].(string); strings.Contains(d, "127.0.0.1") {
				t.Errorf("detail leaks the cause: %q", d)
			}
		})
	}
}

func TestRewritePaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target, prefix, in, want string
	}{
		{"http://svc", "/hc", "/hc", "http://svc/"},
		{"http://svc", "/hc", "/hc/a/b?x=1", "http://svc/a/b?x=1"},
		{"http://svc/base", "/hc", "/hc", "http://svc/base"},
		{"http://svc/base/", "/hc", "/hc", "http://svc/base/"},
		{"http://svc/base/", "/hc", "/hc/a", "http://svc/base/a"},
		{"http://svc/base?k=v", "/hc", "/hc/a?x=1", "http://svc/base/a?k=v&x=1"},
		{"http://svc", "/hc", "/hcx/a", "http://svc/hcx/a"}, // not a path-segment prefix
		{"http://svc", "", "/hc/a", "http://svc/hc/a"},
		{"https://svc:8443", "/hc/", "/hc/a%20b", "https://svc:8443/a%20b"},
	}
	for _, tt := range tests {
		h := newHandler(t, Config{Target: mustURL(t, tt.target), StripPrefix: tt.prefix}, io.Discard)
		in := httptest.NewRequest("GET", "http://relay"+tt.in, nil)
		pr := &httputil.ProxyRequest{In: in, Out: in.Clone(t.Context())}
		h.rewrite(pr)
		if got := pr.Out.URL.String(); got != tt.want {
			t.Errorf("target %s prefix %q in %s: got %s, want %s", tt.target, tt.prefix, tt.in, got, tt.want)
		}
		if pr.Out.Host != "" {
			t.Errorf("Out.Host = %q, want empty (the target's host)", pr.Out.Host)
		}
	}
}

func TestNewRejectsBadTarget(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"ftp://x/", "/relative"} {
		if _, err := New(Config{Target: mustURL(t, s)}, io.Discard, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("New(target %q): got nil error", s)
		}
	}
}
