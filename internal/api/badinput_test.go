package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// Limits of the server under TestBadInput.
const (
	badKey      = "bad-input-key-0123456789"
	badLimit    = 32 << 10 // room for JSON nested past encoding/json's depth limit
	badMaxBatch = 3
)

// gateway is the api's handler in a real http.Server on 127.0.0.1 (with
// the server's own timeouts and header limit), with a recording relayer
// and requester: relayed counts what reached either.
type gateway struct {
	addr    string
	rl      *fakeRelayer
	relayed atomic.Int64
}

func startGateway(t *testing.T, mod func(*api.Config)) *gateway {
	t.Helper()
	g := &gateway{rl: &fakeRelayer{}}
	g.rl.SendFn = func(context.Context, relay.Message) error { g.relayed.Add(1); return nil }
	rq := &fakeRequester{RequestFn: func(context.Context, api.ListenerRequest) (*api.ListenerResponse, error) {
		g.relayed.Add(1)
		return &api.ListenerResponse{Status: 200}, nil
	}}
	cfg := api.Config{Credentials: testCreds, APIKeys: []string{badKey}, MaxBodyBytes: badLimit, MaxBatch: badMaxBatch, SendTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s := api.New(cfg, g.rl, rq, testlog.Logger(t), nil)
	srv := s.HTTPServer(s.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	g.addr = ln.Addr().String()
	return g
}

// roundTrip writes one raw request on a new connection and reads the
// answer (bounded by a deadline, so a hang fails instead of blocking).
func (g *gateway) roundTrip(t *testing.T, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, body
}

// rq builds a raw HTTP/1.1 request: line ("POST /messages"), body, then
// headers. Host, a valid X-API-Key and Content-Length are added unless a
// header of that name is given; "-key" and "-cl" leave them out.
func rq(line, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString(line + " HTTP/1.1\r\n")
	has := func(name string) bool {
		for _, h := range headers {
			if h == "-"+name || strings.HasPrefix(strings.ToLower(h), name+":") {
				return true
			}
		}
		return false
	}
	if !has("host") {
		b.WriteString("Host: 127.0.0.1\r\n")
	}
	if !has("x-api-key") && !has("authorization") && !has("key") {
		b.WriteString("X-API-Key: " + badKey + "\r\n")
	}
	if !has("content-length") && !has("transfer-encoding") && !has("cl") {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	for _, h := range headers {
		if !strings.HasPrefix(h, "-") {
			b.WriteString(h + "\r\n")
		}
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	return b.String()
}

// Shorthands for the Content-Type of a POST.
func js(path, body string, h ...string) string {
	return rq("POST "+path, body, append([]string{"Content-Type: application/json"}, h...)...)
}
func txt(path, body string, h ...string) string {
	return rq("POST "+path, body, append([]string{"Content-Type: text/plain"}, h...)...)
}

// chunked frames body as one chunk and the last chunk.
func chunked(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }

// TestBadInput sends every kind of bad request to a real http.Server and
// checks the exact status and problem code, and that nothing reached the
// relay. Rows with code "" are answered by net/http itself, before the
// gateway's handler, as text/plain (see doc.go: no hook to change them).
func TestBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", badLimit)
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	m := "/messages"
	b := "/messages:batch"
	tests := []struct {
		name   string
		req    string
		status int
		code   string
		allow  string // the Allow header of a 405
	}{
		// Content types and charsets.
		{"no content type", rq("POST "+m, "x"), 415, "unsupported_media_type", ""},
		{"xml", rq("POST "+m, "<a/>", "Content-Type: application/xml"), 415, "unsupported_media_type", ""},
		{"malformed type", rq("POST "+m, "x", "Content-Type: text/"), 415, "unsupported_media_type", ""},
		{"form post", rq("POST "+m, "a=b", "Content-Type: application/x-www-form-urlencoded"), 415, "unsupported_media_type", ""},
		{"multipart", rq("POST "+m, "--x--", "Content-Type: multipart/form-data; boundary=x"), 415, "unsupported_media_type", ""},
		{"html", rq("POST "+m, "<p>", "Content-Type: text/html"), 415, "unsupported_media_type", ""},
		{"json utf-16", rq("POST "+m, `{"message":1}`, "Content-Type: application/json; charset=utf-16"), 415, "unsupported_media_type", ""},
		{"json latin1", rq("POST "+m, `{"message":1}`, "Content-Type: application/json; charset=iso-8859-1"), 415, "unsupported_media_type", ""},
		{"text latin1", rq("POST "+m, "x", "Content-Type: text/plain; charset=iso-8859-1"), 415, "unsupported_media_type", ""},
		{"batch as text", txt(b, "x"), 415, "unsupported_media_type", ""},
		{"batch utf-16", rq("POST "+b, `{"messages":[]}`, "Content-Type: application/x-ndjson; charset=utf-16"), 415, "unsupported_media_type", ""},
		// Content and transfer encodings.
		{"gzip", js(m, `{"message":1}`, "Content-Encoding: gzip"), 415, "unsupported_media_type", ""},
		{"br text", txt(m, "x", "Content-Encoding: br"), 415, "unsupported_media_type", ""},
		{"deflate batch", js(b, `{"messages":[{"message":1}]}`, "Content-Encoding: deflate"), 415, "unsupported_media_type", ""},
		{"te gzip chunked", txt(m, chunked("x"), "Transfer-Encoding: gzip, chunked"), 501, "", ""},
		{"te identity", txt(m, "x", "Transfer-Encoding: identity"), 501, "", ""},
		{"two te headers", txt(m, chunked("x"), "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 501, "", ""},
		// Chunked bodies.
		{"chunked bad json", js(m, chunked(`{"message":`), "Transfer-Encoding: chunked"), 400, "invalid_argument", ""},
		{"chunked over limit", txt(m, chunked(long+"a"), "Transfer-Encoding: chunked"), 413, "payload_too_large", ""},
		{"chunked malformed size", txt(m, "zz\r\nx\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), 400, "invalid_argument", ""},
		{"cl and chunked, framed as chunked", js(m, chunked(`{"MESSAGE":1}`), "Content-Length: 3", "Transfer-Encoding: chunked"), 400, "invalid_argument", ""},
		// Sizes at and over the limit.
		{"json at limit, invalid", js(m, long), 400, "invalid_argument", ""},
		{"text at limit, bad utf-8", txt(m, long[1:]+"\xff"), 400, "invalid_argument", ""},
		{"json over limit", js(m, `{"message":"`+long+`"}`), 413, "payload_too_large", ""},
		{"text over limit", txt(m, long+"a"), 413, "payload_too_large", ""},
		{"binary over limit", rq("POST "+m, long+"a", "Content-Type: application/octet-stream"), 413, "payload_too_large", ""},
		{"batch over limit", js(b, `{"messages":[{"message":"`+long+`"}]}`), 413, "payload_too_large", ""},
		{"declared length over limit", txt(m, "x", "Content-Length: 1000000"), 413, "payload_too_large", ""},
		{"empty json", js(m, ""), 400, "invalid_argument", ""},
		{"empty text", txt(m, ""), 400, "invalid_argument", ""},
		{"empty binary", rq("POST "+m, "", "Content-Type: application/octet-stream"), 400, "invalid_argument", ""},
		{"negative length", txt(m, "x", "Content-Length: -1"), 400, "", ""},
		{"length not a number", txt(m, "x", "Content-Length: x"), 400, "", ""},
		{"two lengths", txt(m, "x", "Content-Length: 1", "Content-Length: 2"), 400, "", ""},
		// Malformed, duplicate and case-variant JSON; deep nesting.
		{"truncated json", js(m, `{"message":`), 400, "invalid_argument", ""},
		{"bare word", js(m, `{"message":x}`), 400, "invalid_argument", ""},
		{"array body", js(m, `["message"]`), 400, "invalid_argument", ""},
		{"string body", js(m, `"hello"`), 400, "invalid_argument", ""},
		{"unknown field", js(m, `{"message":1,"extra":2}`), 400, "invalid_argument", ""},
		{"duplicate message", js(m, `{"message":1,"message":2}`), 400, "invalid_argument", ""},
		{"duplicate id", js(m, `{"message":1,"id":"a","id":"b"}`), 400, "invalid_argument", ""},
		{"upper-case key", js(m, `{"MESSAGE":1}`), 400, "invalid_argument", ""},
		{"mixed-case id", js(m, `{"message":1,"Id":"a"}`), 400, "invalid_argument", ""},
		{"escaped duplicate key", js(m, `{"message":1,"\u006dessage":2}`), 400, "invalid_argument", ""},
		{"trailing value", js(m, `{"message":1} {"message":2}`), 400, "invalid_argument", ""},
		{"trailing garbage", js(m, `{"message":1}x`), 400, "invalid_argument", ""},
		{"null message", js(m, `{"message":null}`), 400, "invalid_argument", ""},
		{"missing message", js(m, `{"id":"a"}`), 400, "invalid_argument", ""},
		{"bad utf-8 in message", js(m, "{\"message\":\"\xff\"}"), 400, "invalid_argument", ""},
		{"byte order mark", js(m, "\ufeff{\"message\":1}"), 400, "invalid_argument", ""},
		{"control char in string", js(m, "{\"message\":\"a\x01\"}"), 400, "invalid_argument", ""},
		{"leading zero", js(m, `{"message":01}`), 400, "invalid_argument", ""},
		{"NaN", js(m, `{"message":NaN}`), 400, "invalid_argument", ""},
		{"unclosed nesting", js(m, `{"message":`+strings.Repeat("[", 5000)+`}`), 400, "invalid_argument", ""},
		{"nesting past 10000", js(m, `{"message":`+deep+`}`), 400, "invalid_argument", ""},
		// Message ids.
		{"empty id", js(m, `{"message":1,"id":""}`), 400, "invalid_argument", ""},
		{"id with space", js(m, `{"message":1,"id":"a b"}`), 400, "invalid_argument", ""},
		{"id 129 chars", js(m, `{"message":1,"id":"`+strings.Repeat("i", 129)+`"}`), 400, "invalid_argument", ""},
		{"id number", js(m, `{"message":1,"id":5}`), 400, "invalid_argument", ""},
		{"id object", js(m, `{"message":1,"id":{}}`), 400, "invalid_argument", ""},
		{"id escaped space", js(m, `{"message":1,"id":"a\u0020b"}`), 400, "invalid_argument", ""},
		{"id slash", js(m, `{"message":1,"id":"a/b"}`), 400, "invalid_argument", ""},
		// Query parameters: ttl and delivery.
		{"ttl plus sign", rq("GET /token?ttl=%2B60", ""), 400, "invalid_argument", ""},
		{"ttl plus as space", rq("GET /token?ttl=+60", ""), 400, "invalid_argument", ""},
		{"ttl zero", rq("GET /token?ttl=0", ""), 400, "invalid_argument", ""},
		{"ttl negative", rq("GET /token?ttl=-1", ""), 400, "invalid_argument", ""},
		{"ttl exponent", rq("GET /token?ttl=1e3", ""), 400, "invalid_argument", ""},
		{"ttl empty", rq("GET /token?ttl=", ""), 400, "invalid_argument", ""},
		{"ttl twice", rq("GET /token?ttl=60&ttl=60", ""), 400, "invalid_argument", ""},
		{"ttl over max", rq("GET /token?ttl=99999999", ""), 400, "invalid_argument", ""},
		{"delivery unknown", txt(m+"?delivery=later", "x"), 400, "invalid_argument", ""},
		{"delivery twice", txt(m+"?delivery=send&delivery=request", "x"), 400, "invalid_argument", ""},
		{"request mode bad body", js(m+"?delivery=request", `{"message":1,"message":2}`), 400, "invalid_argument", ""},
		// Methods and paths.
		{"get messages", rq("GET "+m, ""), 405, "method_not_allowed", "POST"},
		{"delete messages", rq("DELETE "+m, ""), 405, "method_not_allowed", "POST"},
		{"put token", rq("PUT /token", ""), 405, "method_not_allowed", "GET, HEAD"},
		{"post healthz", rq("POST /healthz", ""), 405, "method_not_allowed", "GET, HEAD"},
		{"get batch", rq("GET "+b, ""), 405, "method_not_allowed", "POST"},
		{"invented method", rq(strings.Repeat("X", 1000)+" "+m, ""), 405, "method_not_allowed", "POST"},
		{"unknown path", rq("GET /nope", ""), 404, "not_found", ""},
		{"options asterisk", rq("OPTIONS *", ""), 404, "not_found", ""},
		{"long path", rq("GET /"+strings.Repeat("p", 60<<10), ""), 404, "not_found", ""},
		// Headers net/http answers itself.
		{"headers over 64 KiB", txt(m, "x", "X-Pad: "+strings.Repeat("h", 70<<10)), 431, "", ""},
		{"no host", txt(m, "x", "-host"), 400, "", ""},
		{"bad header name", txt(m, "x", "Bad Name: x"), 400, "", ""},
		{"unknown expectation", txt(m, "x", "Expect: teapot"), 417, "", ""},
		// Host and Origin (DNS rebinding, cross-site simple requests).
		{"foreign host", txt(m, "x", "Host: attacker.example"), 421, "host_not_allowed", ""},
		{"foreign host with port", txt(m, "x", "Host: attacker.example:8080"), 421, "host_not_allowed", ""},
		{"foreign host on token", rq("GET /token", "", "Host: attacker.example"), 421, "host_not_allowed", ""},
		{"foreign host on batch", js(b, `{"messages":[{"message":1}]}`, "Host: rebind.example"), 421, "host_not_allowed", ""},
		{"cross-site text post", txt(m, "x", "Origin: https://evil.example"), 403, "origin_not_allowed", ""},
		{"cross-site json post", js(m, `{"message":1}`, "Origin: https://evil.example"), 403, "origin_not_allowed", ""},
		{"cross-site token", rq("GET /token", "", "Origin: https://evil.example"), 403, "origin_not_allowed", ""},
		{"null origin", txt(m, "x", "Origin: null"), 403, "origin_not_allowed", ""},
		// API keys.
		{"no key", txt(m, "x", "-key"), 401, "unauthenticated", ""},
		{"wrong key", txt(m, "x", "X-API-Key: nope"), 401, "unauthenticated", ""},
		{"key prefix", txt(m, "x", "X-API-Key: "+badKey[:10]), 401, "unauthenticated", ""},
		{"key other case", txt(m, "x", "X-API-Key: "+strings.ToUpper(badKey)), 401, "unauthenticated", ""},
		{"empty bearer", txt(m, "x", "Authorization: Bearer "), 401, "unauthenticated", ""},
		{"basic auth", txt(m, "x", "Authorization: Basic "+badKey), 401, "unauthenticated", ""},
		{"bearer without space", txt(m, "x", "Authorization: Bearer"+badKey), 401, "unauthenticated", ""},
		{"wrong key first", txt(m, "x", "X-API-Key: nope", "X-API-Key: "+badKey), 401, "unauthenticated", ""},
		{"batch without key", js(b, `{"messages":[{"message":1}]}`, "-key"), 401, "unauthenticated", ""},
		{"token without key", rq("GET /token", "", "-key"), 401, "unauthenticated", ""},
		// Batches: nothing is relayed unless every item is valid.
		{"batch empty", js(b, `{"messages":[]}`), 400, "invalid_argument", ""},
		{"batch not array", js(b, `{"messages":{"message":1}}`), 400, "invalid_argument", ""},
		{"batch missing", js(b, `{}`), 400, "invalid_argument", ""},
		{"batch third item bad", js(b, `{"messages":[{"message":1},{"message":2},{"message":null}]}`), 400, "invalid_argument", ""},
		{"batch item not object", js(b, `{"messages":[{"message":1},2]}`), 400, "invalid_argument", ""},
		{"batch over max", js(b, `{"messages":[{"message":1},{"message":2},{"message":3},{"message":4}]}`), 400, "invalid_argument", ""},
		{"batch unknown key", js(b, `{"messages":[{"message":1}],"x":1}`), 400, "invalid_argument", ""},
		{"batch case variant", js(b, `{"Messages":[{"message":1}]}`), 400, "invalid_argument", ""},
		{"batch duplicate", js(b, `{"messages":[{"message":1}],"messages":[{"message":2}]}`), 400, "invalid_argument", ""},
		{"batch trailing", js(b, `{"messages":[{"message":1}]}]`), 400, "invalid_argument", ""},
		{"ndjson bad line", rq("POST "+b, "{\"message\":1}\n{\"message\":2}\n{\"message\":\n", "Content-Type: application/x-ndjson"), 400, "invalid_argument", ""},
		{"ndjson duplicate key", rq("POST "+b, "{\"message\":1}\n{\"message\":1,\"message\":2}\n", "Content-Type: application/x-ndjson"), 400, "invalid_argument", ""},
		{"ndjson blank", rq("POST "+b, "\n \n", "Content-Type: application/x-ndjson"), 400, "invalid_argument", ""},
	}
	g := startGateway(t, nil)
	for _, tt := range tests {
		resp, body := g.roundTrip(t, tt.req)
		var p problem
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			if err := json.Unmarshal(body, &p); err != nil {
				t.Errorf("%s: problem body: %v", tt.name, err)
			}
		}
		if resp.StatusCode != tt.status || p.Code != tt.code {
			t.Errorf("%s: got %d %q, want %d %q: %.300s", tt.name, resp.StatusCode, p.Code, tt.status, tt.code, body)
		}
		if got := resp.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s: Allow %q, want %q", tt.name, got, tt.allow)
		}
		if len(p.Detail) > 400 {
			t.Errorf("%s: detail of %d bytes echoes the input", tt.name, len(p.Detail))
		}
		if n := g.relayed.Load(); n != 0 {
			t.Fatalf("%s: %d messages reached the relay", tt.name, n)
		}
	}
	if len(tests) < 60 {
		t.Errorf("%d cases, want at least 60", len(tests))
	}
}

// TestContentLengthWithChunked pins what net/http does, before any
// handler, with both Content-Length and chunked Transfer-Encoding: per RFC
// 9112 §6.3 it drops Content-Length and frames the body as chunked (the
// handler cannot tell the header was there, so it cannot answer 400). The
// gateway is the endpoint, not an intermediary, so both agree on the
// framing: the chunked body is relayed whole ("5\r\nh" would be the
// Content-Length framing).
func TestContentLengthWithChunked(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	resp, _ := g.roundTrip(t, txt("/messages", chunked("hello"), "Transfer-Encoding: chunked", "Content-Length: 4"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	if msgs := g.rl.messages(); len(msgs) != 1 || string(msgs[0].Data) != "hello" {
		t.Fatalf("relayed %d messages (%q), want only the chunked body", len(msgs), msgs)
	}
}

// TestHeadAndAllow: HEAD is answered wherever GET is, without a body, and
// a streaming GET (the console feed) ends once its headers are out, while
// the client still holds the connection.
func TestHeadAndAllow(t *testing.T) {
	t.Parallel()
	returned := make(chan string, 1)
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		returned <- r.Method
	})
	g := startGateway(t, func(c *api.Config) { c.Console.Events = stream })
	for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml", "/token"} {
		resp, body := g.roundTrip(t, rq("HEAD "+path, ""))
		if resp.StatusCode != http.StatusOK || len(body) != 0 {
			t.Errorf("HEAD %s: status %d, %d body bytes", path, resp.StatusCode, len(body))
		}
	}
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, strings.Replace(rq("HEAD /console/events", ""), "Connection: close\r\n", "", 1))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "HEAD"})
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD /console/events: %v %v", resp, err)
	}
	select {
	case m := <-returned:
		if m != http.MethodHead {
			t.Errorf("handler saw %s", m)
		}
	case <-time.After(5 * time.Second): // a bound on a hang, not a synchronisation
		t.Fatal("the streaming handler still runs after answering HEAD")
	}
}

// TestNotFoundDetailIsTruncated: a 60 KB path is not echoed back.
func TestNotFoundDetailIsTruncated(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	resp, body := g.roundTrip(t, rq("GET /"+strings.Repeat("p", 60<<10), ""))
	var p problem
	json.Unmarshal(body, &p)
	if resp.StatusCode != 404 || len(p.Detail) > 300 || !strings.HasSuffix(p.Detail, "…") {
		t.Fatalf("status %d, detail of %d bytes: %.80q", resp.StatusCode, len(p.Detail), p.Detail)
	}
}

// TestPooledBuffersAreNotShared: concurrent requests of every kind over a
// real server each relay exactly their own bytes, so no pooled body or
// frame buffer is reused while the relay or a response still needs it.
func TestPooledBuffersAreNotShared(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil)
	client := &http.Client{}
	const workers, each = 6, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				for i := range each {
					id := fmt.Sprintf("w%d-%d", w, i)
					body, ct, path := `{"id":"`+id+`","message":"`+strings.Repeat(id, i)+`"}`, "application/json", "/messages"
					if i%3 == 1 {
						body, ct = strings.Repeat(id+";", i+1), "text/plain"
					} else if i%3 == 2 {
						body, ct, path = `{"messages":[{"id":"`+id+`","message":"`+strings.Repeat(id, i)+`"}]}`, "application/json", "/messages:batch"
					}
					req, _ := http.NewRequest("POST", "http://"+g.addr+path, strings.NewReader(body))
					req.Header.Set("Content-Type", ct)
					req.Header.Set("X-API-Key", badKey)
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 300 || ct == "application/json" && !strings.Contains(string(b), `"id":"`+id+`"`) {
						return fmt.Errorf("%s: %d %s", id, resp.StatusCode, b)
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs := g.rl.messages()
	if len(msgs) != workers*each {
		t.Fatalf("relayed %d messages, want %d", len(msgs), workers*each)
	}
	for _, m := range msgs {
		data := string(m.Data)
		if m.Type == relay.MessageText && strings.HasPrefix(data, "{") {
			var env struct{ ID, Message string }
			if err := json.Unmarshal(m.Data, &env); err != nil || env.ID != m.ID || strings.ReplaceAll(env.Message, env.ID, "") != "" {
				t.Errorf("frame %q (id %q) mixes requests", data, m.ID)
			}
			continue
		}
		first, _, _ := strings.Cut(data, ";")
		if strings.ReplaceAll(data, first+";", "") != "" {
			t.Errorf("text frame %q mixes requests", data)
		}
	}
}
