package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

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
		// httptest.NewRequest's Host; real-server tests use 127.0.0.1.
		AllowedHosts: []string{"example.com"},
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
