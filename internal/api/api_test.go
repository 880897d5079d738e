package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/relaygate/relaygate"
	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakeRelayer is a function-field Relayer (and ReadinessChecker).
type fakeRelayer struct {
	SendFn  func(ctx context.Context, m relay.Message) error
	ReadyFn func() (bool, string)

	mu   sync.Mutex
	sent []relay.Message
}

func (f *fakeRelayer) Send(ctx context.Context, m relay.Message) error {
	f.mu.Lock()
	f.sent = append(f.sent, relay.Message{ID: m.ID, Type: m.Type, Data: bytes.Clone(m.Data)})
	f.mu.Unlock()
	if f.SendFn != nil {
		return f.SendFn(ctx, m)
	}
	return nil
}

func (f *fakeRelayer) Ready() (bool, string) {
	if f.ReadyFn != nil {
		return f.ReadyFn()
	}
	return true, ""
}

func (f *fakeRelayer) messages() []relay.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]relay.Message(nil), f.sent...)
}

type fakeRequester struct {
	RequestFn func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error)
}

func (f *fakeRequester) Request(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
	return f.RequestFn(ctx, req)
}

const testKey = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NQ=="

var testCreds = relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1", KeyName: "send", Key: testKey}

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	t    *testing.T
	c    *apitest.Contract
	srv  *api.Server
	h    http.Handler
	rl   *fakeRelayer
	rq   *fakeRequester
	logs *testlog.Buffer
	cfg  api.Config
}

func newEnv(t *testing.T, mod func(*api.Config)) *env {
	t.Helper()
	e := &env{t: t, c: apitest.Load(t), rl: &fakeRelayer{}, rq: &fakeRequester{}}
	e.cfg = api.Config{
		Credentials:  testCreds,
		MaxBodyBytes: 1 << 10,
		SendTimeout:  2 * time.Second,
		RetryAfter:   2 * time.Second,
		Now:          func() time.Time { return testNow },
		MetricsHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "x 1\n")
		}),
	}
	if mod != nil {
		mod(&e.cfg)
	}
	var log *slog.Logger
	log, e.logs = testlog.New(t)
	e.srv = api.New(e.cfg, e.rl, e.rq, log, nil)
	e.h = e.srv.Handler()
	return e
}

func (e *env) do(method, target, contentType string, body []byte, hdr ...string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.c.Serve(e.t, e.h, req)
}

func readAll(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type problem struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Pointer   string `json:"pointer"`
		Parameter string `json:"parameter"`
		Detail    string `json:"detail"`
	} `json:"errors"`
}

func decodeProblem(t *testing.T, r *http.Response) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(readAll(t, r), &p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	return p
}

func TestOpenAPIServedIsTheRootFile(t *testing.T) {
	t.Parallel()
	root, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, relaygate.OpenAPI) {
		t.Fatal("embedded openapi.yaml differs from the repository root file")
	}
	e := newEnv(t, nil)
	resp := e.do("GET", "/openapi.yaml", "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(readAll(t, resp), root) {
		t.Fatalf("GET /openapi.yaml: status %d or body differs", resp.StatusCode)
	}
}

func TestSendJSONPreservesMessageBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, wantFrame string
	}{
		{"seed string", `{"message":"hello"}`, `{"id":"ID","message":"hello"}`},
		{"object with spacing", `{ "id" : "order-42", "message" : {"b" : 2,  "a":[1, 2.50, "\u00e9"]} }`, `{"id":"order-42","message":{"b" : 2,  "a":[1, 2.50, "\u00e9"]}}`},
		{"number", `{"message": 1.50e+10}`, `{"id":"ID","message":1.50e+10}`},
		{"false", `{"message":false}`, `{"id":"ID","message":false}`},
		{"html stays", `{"message":"<a>&"}`, `{"id":"ID","message":"<a>&"}`},
		{"utf8", `{"message":"héllo ✓"}`, `{"id":"ID","message":"héllo ✓"}`},
		{"null id", `{"message":[],"id":null}`, `{"id":"ID","message":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", "/messages", "application/json", []byte(tt.body))
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", resp.StatusCode, readAll(t, resp))
			}
			var got struct{ ID, Status string }
			json.Unmarshal(readAll(t, resp), &got)
			msgs := e.rl.messages()
			if len(msgs) != 1 {
				t.Fatalf("relayed %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			want := strings.Replace(tt.wantFrame, `"ID"`, fmt.Sprintf("%q", got.ID), 1)
			if m.Type != relay.MessageText || string(m.Data) != want || m.ID != got.ID || got.Status != "sent" {
				t.Errorf("got frame %s %q id %q (response %+v), want text %q", m.Type, m.Data, m.ID, got, want)
			}
			if !json.Valid(m.Data) {
				t.Errorf("frame is not valid JSON")
			}
		})
	}
}

func TestSendTextAndBinary(t *testing.T) {
	t.Parallel()
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	tests := []struct {
		ct       string
		body     []byte
		wantType relay.MessageType
	}{
		{"text/plain", []byte("hello world\n"), relay.MessageText},
		{"text/plain; charset=UTF-8", []byte("héllo"), relay.MessageText},
		{"application/octet-stream", bin, relay.MessageBinary},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", "/messages", tt.ct, tt.body)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
			}
			msgs := e.rl.messages()
			if len(msgs) != 1 || msgs[0].Type != tt.wantType || !bytes.Equal(msgs[0].Data, tt.body) {
				t.Fatalf("relayed %+v, want one %s frame %q", msgs, tt.wantType, tt.body)
			}
		})
	}
}

func TestSendRejectsBadRequests(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a"), 1<<10+1)
	tests := []struct {
		name, target, ct string
		body             []byte
		wantStatus       int
		wantPointers     []string
		wantParam        string
	}{
		{"malformed json", "/messages", "application/json", []byte(`{"message":`), 400, nil, ""},
		{"syntax error", "/messages", "application/json", []byte(`{"message":x}`), 400, nil, ""},
		{"not an object", "/messages", "application/json", []byte(`["message"]`), 400, nil, ""},
		{"unknown field", "/messages", "application/json", []byte(`{"message":1,"extra":2}`), 400, []string{"#/extra"}, ""},
		{"trailing data", "/messages", "application/json", []byte(`{"message":1} {"message":2}`), 400, nil, ""},
		{"trailing garbage", "/messages", "application/json", []byte(`{"message":1}x`), 400, nil, ""},
		{"missing message", "/messages", "application/json", []byte(`{"id":"a"}`), 400, []string{"#/message"}, ""},
		{"null message", "/messages", "application/json", []byte(`{"message":null}`), 400, []string{"#/message"}, ""},
		{"bad id and missing message", "/messages", "application/json", []byte(`{"id":"no spaces"}`), 400, []string{"#/message", "#/id"}, ""},
		{"id too long", "/messages", "application/json", []byte(`{"message":1,"id":"` + strings.Repeat("a", 129) + `"}`), 400, []string{"#/id"}, ""},
		{"empty id", "/messages", "application/json", []byte(`{"message":1,"id":""}`), 400, []string{"#/id"}, ""},
		{"id not a string", "/messages", "application/json", []byte(`{"message":1,"id":5}`), 400, []string{"#/id"}, ""},
		{"invalid utf8 in json", "/messages", "application/json", []byte("{\"message\":\"\xff\"}"), 400, []string{"#/message"}, ""},
		{"empty json", "/messages", "application/json", []byte{}, 400, nil, ""},
		{"empty text", "/messages", "text/plain", []byte{}, 400, nil, ""},
		{"invalid utf8 text", "/messages", "text/plain", []byte{'a', 0xff}, 400, nil, ""},
		{"bad delivery", "/messages?delivery=later", "text/plain", []byte("x"), 400, nil, "delivery"},
		{"json too large", "/messages", "application/json", append(append([]byte(`{"message":"`), big...), `"}`...), 413, nil, ""},
		{"text too large", "/messages", "text/plain", big, 413, nil, ""},
		{"binary too large", "/messages", "application/octet-stream", big, 413, nil, ""},
		{"xml", "/messages", "application/xml", []byte("<a/>"), 415, nil, ""},
		{"no content type", "/messages", "", []byte("x"), 415, nil, ""},
		{"bad media type", "/messages", "text/", []byte("x"), 415, nil, ""},
		{"latin1 text", "/messages", "text/plain; charset=iso-8859-1", []byte("x"), 415, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.do("POST", tt.target, tt.ct, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, readAll(t, resp))
			}
			p := decodeProblem(t, resp)
			var ptrs []string
			for _, fe := range p.Errors {
				if fe.Pointer != "" {
					ptrs = append(ptrs, fe.Pointer)
				}
				if tt.wantParam != "" && fe.Parameter != tt.wantParam {
					t.Errorf("parameter %q, want %q", fe.Parameter, tt.wantParam)
				}
			}
			if tt.wantPointers != nil && strings.Join(ptrs, ",") != strings.Join(tt.wantPointers, ",") {
				t.Errorf("pointers %v, want %v (%+v)", ptrs, tt.wantPointers, p)
			}
			if n := len(e.rl.messages()); n != 0 {
				t.Errorf("relayed %d messages for a rejected request", n)
			}
		})
	}
}

func TestSendMapsRelayErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		{fmt.Errorf("dial: %w", relay.ErrUnauthorized), 502, "relay_auth"},
		{fmt.Errorf("dial: %w", relay.ErrForbidden), 502, "relay_auth"},
		{fmt.Errorf("dial: %w", relay.ErrNoListener), 503, "no_listener"},
		{fmt.Errorf("request: %w", relay.ErrEntityNotFound), 502, "relay_not_found"},
		{fmt.Errorf("%w: %w", relay.ErrUnavailable, relay.ErrUnreachable), 503, "relay_unreachable"},
		{relay.ErrUnavailable, 503, "unavailable"},
		{fmt.Errorf("%w: no listener connected: %w", relay.ErrUnavailable, &relay.StatusError{StatusCode: 404, Reason: "Endpoint does not exist.", Action: relay.ActionConnect}), 503, "no_listener"},
		{&relay.StatusError{StatusCode: 404, Reason: "Endpoint does not exist.", Action: relay.ActionRequest}, 502, "relay_not_found"},
		{fmt.Errorf("%w: 5 bytes", relay.ErrMessageTooLarge), 413, "payload_too_large"},
		{relay.ErrConnLost, 503, "unavailable"},
		{relay.ErrOverloaded, 503, "overloaded"},
		{relay.ErrClosed, 503, "draining"},
		{relay.ErrTimeout, 504, "timeout"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), 504, "timeout"},
		{relay.ErrServerError, 502, "relay_error"},
		{errors.New("boom"), 500, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.wantCode+"/"+tt.err.Error(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.rl.SendFn = func(context.Context, relay.Message) error { return tt.err }
			resp := e.do("POST", "/messages", "text/plain", []byte("hi"))
			p := decodeProblem(t, resp)
			if resp.StatusCode != tt.wantStatus || p.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, p.Code, tt.wantStatus, tt.wantCode)
			}
			if tt.wantStatus == 503 && resp.Header.Get("Retry-After") != "2" {
				t.Errorf("Retry-After %q, want 2", resp.Header.Get("Retry-After"))
			}
			if tt.wantCode == "internal" && p.Detail != "internal error" {
				t.Errorf("internal detail %q leaks the cause", p.Detail)
			}
		})
	}
}

func TestSendDeadlineIs504(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.SendTimeout = 20 * time.Millisecond })
	e.rl.SendFn = func(ctx context.Context, m relay.Message) error {
		<-ctx.Done()
		return ctx.Err()
	}
	resp := e.do("POST", "/messages", "text/plain", []byte("hi"))
	if p := decodeProblem(t, resp); resp.StatusCode != 504 || p.Code != "timeout" {
		t.Fatalf("got %d %s, want 504 timeout", resp.StatusCode, p.Code)
	}
}

func TestDeliveryRequest(t *testing.T) {
	t.Parallel()
	t.Run("listener error is not a gateway error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		var got api.ListenerRequest
		e.rq.RequestFn = func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
			got = req
			h := http.Header{"Content-Type": {"text/plain"}, "Via": {"1.1 ns"}, "X-A": {"1", "2"}}
			return &api.ListenerResponse{Status: 500, Header: h, Body: []byte("listener broke")}, nil
		}
		resp := e.do("POST", "/messages?delivery=request", "application/json", []byte(`{"id":"m1","message":{"k": 1}}`))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
		}
		var d struct {
			ID, Status string
			Listener   struct {
				Status       int
				Headers      map[string]string
				Body         string
				BodyEncoding string
			}
		}
		json.Unmarshal(readAll(t, resp), &d)
		if d.ID != "m1" || d.Status != "delivered" || d.Listener.Status != 500 || d.Listener.Body != "listener broke" ||
			d.Listener.BodyEncoding != "utf-8" || d.Listener.Headers["X-A"] != "1, 2" || d.Listener.Headers["Via"] != "" {
			t.Errorf("got %+v", d)
		}
		if got.ContentType != "application/json" || string(got.Body) != `{"id":"m1","message":{"k": 1}}` || got.ID != "m1" {
			t.Errorf("listener request %+v %q", got, got.Body)
		}
		if len(e.rl.messages()) != 0 {
			t.Error("request delivery also went through the pool")
		}
	})
	t.Run("binary reply is base64", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		e.rq.RequestFn = func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
			return &api.ListenerResponse{Status: 201, Body: []byte{0xff, 0}}, nil
		}
		resp := e.do("POST", "/messages?delivery=request", "application/octet-stream", []byte{1, 2})
		if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(string(b), `"body":"/wA=","bodyEncoding":"base64"`) {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	})
	for _, tt := range []struct {
		err      error
		status   int
		wantCode string
	}{
		{relay.ErrNoListener, 503, "no_listener"},
		{relay.ErrEntityNotFound, 502, "relay_not_found"},
		{relay.ErrTimeout, 504, "timeout"},
		{relay.ErrUnauthorized, 502, "relay_auth"},
		{api.ErrListenerBodyTooLarge, 502, "relay_error"},
	} {
		t.Run(tt.wantCode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			e.rq.RequestFn = func(context.Context, api.ListenerRequest) (*api.ListenerResponse, error) { return nil, tt.err }
			resp := e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
			if p := decodeProblem(t, resp); resp.StatusCode != tt.status || p.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, p.Code, tt.status, tt.wantCode)
			}
		})
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.TokenMaxTTL = 2 * time.Hour })
	tests := []struct {
		query      string
		wantStatus int
		wantTTL    time.Duration
	}{
		{"", 200, time.Hour},
		{"?ttl=60", 200, time.Minute},
		{"?ttl=7200", 200, 2 * time.Hour},
		{"?ttl=7201", 400, 0},
		{"?ttl=0", 400, 0},
		{"?ttl=-5", 400, 0},
		{"?ttl=abc", 400, 0},
		{"?ttl=1.5", 400, 0},
	}
	for _, tt := range tests {
		resp := e.do("GET", "/token"+tt.query, "", nil)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.query, resp.StatusCode, tt.wantStatus)
			continue
		}
		body := readAll(t, resp)
		if strings.Contains(string(body), testKey) {
			t.Fatalf("%s: response contains the key", tt.query)
		}
		if tt.wantStatus != 200 {
			var p problem
			json.Unmarshal(body, &p)
			if len(p.Errors) != 1 || p.Errors[0].Parameter != "ttl" {
				t.Errorf("%s: errors %+v, want one for ttl", tt.query, p.Errors)
			}
			continue
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		var tok struct{ Token, ExpiresAt, Resource, KeyName, URL string }
		json.Unmarshal(body, &tok)
		parsed, err := relay.ParseToken(tok.Token)
		if err != nil {
			t.Fatalf("%s: token does not parse: %v", tt.query, err)
		}
		if !parsed.CheckSignature(testKey) || !parsed.Covers("ns.servicebus.windows.net", "hc1") {
			t.Errorf("%s: token does not verify for the entity", tt.query)
		}
		if want := testNow.Add(tt.wantTTL).Format(time.RFC3339); tok.ExpiresAt != want || !parsed.Expiry.Equal(testNow.Add(tt.wantTTL)) {
			t.Errorf("%s: expiresAt %s, want %s", tt.query, tok.ExpiresAt, want)
		}
		if tok.Resource != "http://ns.servicebus.windows.net/hc1" || tok.KeyName != "send" {
			t.Errorf("resource %q keyName %q", tok.Resource, tok.KeyName)
		}
		if !strings.HasPrefix(tok.URL, "wss://ns.servicebus.windows.net/$hc/hc1?sb-hc-action=connect&sb-hc-id=") || !strings.Contains(tok.URL, "&sb-hc-token=SharedAccessSignature") {
			t.Errorf("url %q", tok.URL)
		}
	}
}

func TestTokenWithFixedSAS(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(30 * time.Minute)
	sas := relay.CreateToken("http://ns.servicebus.windows.net/hc1", "fixed", testKey, exp)
	e := newEnv(t, func(c *api.Config) {
		c.Credentials = relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1", SharedAccessSignature: sas}
	})
	resp := e.do("GET", "/token?ttl=60", "", nil)
	var tok struct{ Token, ExpiresAt, KeyName string }
	json.Unmarshal(readAll(t, resp), &tok)
	if resp.StatusCode != 200 || tok.Token != sas || tok.KeyName != "fixed" || tok.ExpiresAt != exp.Format(time.RFC3339) {
		t.Fatalf("got %d %+v", resp.StatusCode, tok)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.APIKeys = []string{"key-one-0123456789", "key-two-0123456789"} })
	tests := []struct {
		name, target string
		hdr          []string
		want         int
	}{
		{"none", "/messages", nil, 401},
		{"wrong bearer", "/messages", []string{"Authorization", "Bearer nope"}, 401},
		{"wrong header", "/token", []string{"X-API-Key", "key-one-012345678"}, 401},
		{"basic", "/token", []string{"Authorization", "Basic a2V5LW9uZS0wMTIzNDU2Nzg5"}, 401},
		{"bearer", "/messages", []string{"Authorization", "Bearer key-one-0123456789"}, 202},
		{"bearer lowercase", "/messages", []string{"Authorization", "bearer key-two-0123456789"}, 202},
		{"x-api-key", "/token", []string{"X-API-Key", "key-two-0123456789"}, 200},
		{"healthz needs none", "/healthz", nil, 200},
		{"readyz needs none", "/readyz", nil, 200},
	}
	for _, tt := range tests {
		method, ct, body := "GET", "", []byte(nil)
		if tt.target == "/messages" {
			method, ct, body = "POST", "text/plain", []byte("x")
		}
		resp := e.do(method, tt.target, ct, body, tt.hdr...)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if tt.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := len(e.rl.messages()); n != 2 {
		t.Errorf("relayed %d messages, want 2 (only the authenticated ones)", n)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) {
		c.CORSOrigins = []string{"https://app.example"}
		c.APIKeys = []string{"key-one-0123456789"}
	})
	pre := e.do("OPTIONS", "/messages", "", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization")
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
	other := e.do("OPTIONS", "/token", "", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if other.StatusCode != 204 || other.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", other.StatusCode, other.Header)
	}
	resp := e.do("POST", "/messages", "text/plain", []byte("x"), "Origin", "https://app.example", "X-API-Key", "key-one-0123456789")
	if resp.StatusCode != 202 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("actual request: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	resp := e.do("POST", "/messages", "application/json", []byte(`{}`), "X-Request-Id", "caller-1.2:3")
	if got := resp.Header.Get("X-Request-Id"); got != "caller-1.2:3" {
		t.Errorf("X-Request-Id %q, want the caller's", got)
	}
	if p := decodeProblem(t, resp); p.RequestID != "caller-1.2:3" {
		t.Errorf("problem request_id %q", p.RequestID)
	}
	if !strings.Contains(e.logs.String(), "request_id=caller-1.2:3") {
		t.Errorf("request id not logged")
	}
	resp = e.do("GET", "/healthz", "", nil, "X-Request-Id", "bad id\x01")
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("invalid X-Request-Id not replaced: %q", got)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ready, why := true, ""
	var mu sync.Mutex
	e.rl.ReadyFn = func() (bool, string) { mu.Lock(); defer mu.Unlock(); return ready, why }
	if r := e.do("GET", "/healthz", "", nil); r.StatusCode != 200 {
		t.Errorf("healthz %d", r.StatusCode)
	}
	if r := e.do("GET", "/readyz", "", nil); r.StatusCode != 200 {
		t.Errorf("readyz %d", r.StatusCode)
	}
	mu.Lock()
	ready, why = false, "no listener connected"
	mu.Unlock()
	r := e.do("GET", "/readyz", "", nil)
	if p := decodeProblem(t, r); r.StatusCode != 503 || p.Code != "not_ready" || !strings.Contains(p.Detail, "no listener") {
		t.Errorf("readyz without listener: %d %+v", r.StatusCode, p)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	e.srv.Drain()
	r = e.do("GET", "/readyz", "", nil)
	if p := decodeProblem(t, r); r.StatusCode != 503 || !strings.Contains(p.Detail, "draining") {
		t.Errorf("readyz while draining: %d %+v", r.StatusCode, p)
	}
	r = e.do("POST", "/messages", "text/plain", []byte("x"))
	if p := decodeProblem(t, r); r.StatusCode != 503 || p.Code != "draining" {
		t.Errorf("send while draining: %d %+v", r.StatusCode, p)
	}
	if r := e.do("GET", "/healthz", "", nil); r.StatusCode != 200 {
		t.Errorf("healthz while draining %d", r.StatusCode)
	}
	if len(e.rl.messages()) != 0 {
		t.Error("relayed while draining")
	}
}

func TestRecovererAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.rl.SendFn = func(context.Context, relay.Message) error { panic("boom") }
	r := e.do("POST", "/messages", "text/plain", []byte("x"))
	if p := decodeProblem(t, r); r.StatusCode != 500 || p.Code != "internal" || p.Detail != "internal error" {
		t.Errorf("panic: %d %+v", r.StatusCode, p)
	}
	if r := e.do("GET", "/nope", "", nil); r.StatusCode != 404 {
		t.Errorf("unknown path: %d", r.StatusCode)
	}
	if r := e.do("DELETE", "/messages", "", nil); r.StatusCode != 405 {
		t.Errorf("wrong method: %d", r.StatusCode)
	}
	if r := e.do("GET", "/metrics", "", nil); r.StatusCode != 200 {
		t.Errorf("metrics: %d", r.StatusCode)
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.APIKeys = []string{"api-key-0123456789abcdef"} })
	auth := []string{"Authorization", "Bearer api-key-0123456789abcdef"}
	r := e.do("GET", "/token?ttl=60", "", nil, auth...)
	var tok struct{ Token string }
	json.Unmarshal(readAll(t, r), &tok)
	parsed, err := relay.ParseToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/messages", "text/plain", []byte("x"), auth...)
	e.do("POST", "/messages", "text/plain", []byte("x"), "Authorization", "Bearer wrong-key-0123456789")
	e.rl.SendFn = func(context.Context, relay.Message) error { return fmt.Errorf("dial: %w", relay.ErrUnauthorized) }
	e.do("POST", "/messages", "text/plain", []byte("x"), auth...)
	logs := e.logs.String()
	sig := tok.Token[strings.Index(tok.Token, "sig=")+4:]
	sig = sig[:strings.IndexByte(sig, '&')]
	testlog.AssertNoSecrets(t, logs, testKey, "api-key-0123456789abcdef", "wrong-key-0123456789", tok.Token, sig, parsed.RawResource+"&sig")
}

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

// FuzzSend feeds arbitrary bodies and content types to POST /messages: the
// answer is never a 500, and whatever is relayed is one valid frame.
func FuzzSend(f *testing.F) {
	f.Add("application/json", []byte(`{"message":{"a":[1,2]},"id":"x"}`))
	f.Add("application/json", []byte(`{"message":"\u00e9"} `))
	f.Add("application/json", []byte(`{"message":1}{"message":2}`))
	f.Add("application/json", []byte(`{"message":null,"id":""}`))
	f.Add("application/json", []byte("{\"message\":\"\xff\"}"))
	f.Add("text/plain", []byte("hello"))
	f.Add("text/plain; charset=latin1", []byte("x"))
	f.Add("application/octet-stream", []byte{0, 1, 2})
	f.Add("multipart/form-data; boundary=x", []byte("--x--"))
	rl := &fakeRelayer{}
	srv := api.New(api.Config{Credentials: testCreds, MaxBodyBytes: 4096}, rl, nil, slog.New(slog.DiscardHandler), nil)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		rl.SendFn = func(ctx context.Context, m relay.Message) error {
			if m.Type == relay.MessageText && !utf8Valid(m.Data) {
				t.Errorf("text frame is not UTF-8: %q", m.Data)
			}
			if strings.HasPrefix(ct, "application/json") && !json.Valid(m.Data) {
				t.Errorf("JSON envelope is not valid JSON: %q", m.Data)
			}
			return nil
		}
		req := httptest.NewRequest("POST", "/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q %q: %s", rec.Code, ct, body, rec.Body)
		}
	})
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "") == string(b) }

// TestRoutesMatchContract: every chi route is an operation of openapi.yaml
// and every operation (but the CORS preflights, answered by middleware) has
// a route, so neither can drift from the other.
func TestRoutesMatchContract(t *testing.T) {
	t.Parallel()
	stub := http.NotFoundHandler()
	e := newEnv(t, func(c *api.Config) { c.Console = api.ConsoleHandlers{Page: stub, Status: stub, Events: stub} })
	routes := map[string]bool{}
	err := chi.Walk(e.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for path, item := range apitest.Load(t).Paths() {
		for method := range item.Operations() {
			if method != http.MethodOptions {
				ops[method+" "+path] = true
			}
		}
	}
	for r := range routes {
		if !ops[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for o := range ops {
		if !routes[o] {
			t.Errorf("openapi.yaml operation %s has no route", o)
		}
	}
}

// TestProblemGolden pins the exact problem documents of a few errors
// (testdata/*.golden; refresh with -update).
func TestProblemGolden(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.rl.SendFn = func(context.Context, relay.Message) error { return relay.ErrOverloaded }
	cases := []struct {
		name, target, ct, body string
	}{
		{"invalid_argument", "/messages", "application/json", `{"id":"a b","extra":1}`},
		{"unsupported_media_type", "/messages", "application/xml", `<a/>`},
		{"overloaded", "/messages", "text/plain", `x`},
		{"ttl", "/token?ttl=0", "", ``},
	}
	var got bytes.Buffer
	for _, c := range cases {
		method := "POST"
		if c.ct == "" {
			method = "GET"
		}
		resp := e.do(method, c.target, c.ct, []byte(c.body), "X-Request-Id", "golden-"+c.name)
		fmt.Fprintf(&got, "%s %d Retry-After=%q\n%s\n", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), readAll(t, resp))
	}
	golden := "testdata/problems.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("problem documents changed:\n got:\n%s\nwant:\n%s", got.Bytes(), want)
	}
}
