package api_test

import (
	"strings"
	"sync"
	"testing"
)

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
	// Requests are still served while draining, each closing its
	// keep-alive connection.
	r = e.do("POST", "/messages", "text/plain", []byte("x"))
	if c := r.Header.Get("Connection"); r.StatusCode != 202 || c != "close" {
		t.Errorf("send while draining: %d, Connection: %q; want 202 and close", r.StatusCode, c)
	}
	if r := e.do("GET", "/healthz", "", nil); r.StatusCode != 200 {
		t.Errorf("healthz while draining %d", r.StatusCode)
	}
	if len(e.rl.messages()) != 1 {
		t.Error("not relayed while draining")
	}
}
