//go:build linux

package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEvLoad runs the epoll open loop against a real server on loopback:
// every arrival is answered once, counted by status, and connections are
// reused, redialled after Connection: close, and capped.
func TestEvLoad(t *testing.T) {
	var conns, served atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		served.Add(1)
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusAccepted)
		case "/full":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"overloaded"}`)
		case "/chunked":
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, strings.Repeat("x", 5000)) // over net/http's 2 KiB: chunked
		case "/hangup":
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Write([]byte("HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort"))
			c.Close()
		default:
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"status":"sent"}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	run := func(path string, maxConns int, rate float64, window time.Duration) (loadResult, int64) {
		t.Helper()
		conns.Store(0)
		served.Store(0)
		ev, msgs := newTestEvLoad(t, srv.URL+path, maxConns)
		res, err := ev.run(t.Context(), rate, window)
		if err != nil {
			t.Fatal(err)
		}
		return res, msgs.Load()
	}

	res, msgs := run("/messages", 8, 2000, 50*time.Millisecond) // 100 arrivals
	if res.Measured != 100 || msgs != 100 || len(res.Service) != 100 || res.errorCount() != 0 || served.Load() != 100 {
		t.Errorf("keep-alive: %d measured, %d messages, %d served, errors %v; want 100 each, none", res.Measured, msgs, served.Load(), res.Errors)
	}
	if n := conns.Load(); n < 1 || n > 8 {
		t.Errorf("keep-alive: %d connections, want 1 to 8", n)
	}
	// Queued arrivals go out as soon as the previous one is answered: on a
	// new connection each, when the answer said Connection: close.
	if res, _ := run("/close", 1, 100_000, time.Millisecond); res.Measured != 100 || conns.Load() != 100 {
		t.Errorf("Connection: close: %d measured, %d connections, errors %v; want 100, 100, none", res.Measured, conns.Load(), res.Errors)
	}
	// All 100 arrivals fall due within a millisecond: they queue for the
	// one connection and go out on it one after the other.
	if res, msgs := run("/messages", 1, 100_000, time.Millisecond); res.Measured != 100 || msgs != 100 || conns.Load() != 1 {
		t.Errorf("one connection: %d measured, %d messages, %d connections; want 100, 100, 1", res.Measured, msgs, conns.Load())
	}
	for path, want := range map[string]string{
		"/full":    "HTTP 503 overloaded",
		"/chunked": "Transfer-Encoding is not supported by the load generator",
		"/hangup":  "connection closed by the server",
	} {
		res, msgs := run(path, 4, 2000, 50*time.Millisecond)
		if res.Measured != 0 || msgs != 0 || res.Errors[want] != 100 || len(res.Errors) != 1 {
			t.Errorf("%s: %d measured, %d messages, errors %v; want 100× %q", path, res.Measured, msgs, res.Errors, want)
		}
	}
}

// TestEvLoadEndsWithContext: a cancelled run returns at once with the
// context's error, even with requests unanswered.
func TestEvLoadEndsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the backlog) and never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ev, _ := newTestEvLoad(t, "http://"+ln.Addr().String()+"/", 2)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		c, err := ln.Accept() // the first request is out: stop the run
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
		cancel()
	}()
	if _, err := ev.run(ctx, 1000, time.Hour); err != context.Canceled {
		t.Errorf("run: %v, want context.Canceled", err)
	}
}

// TestEvLoadDialFails: arrivals that find no server fail with the dial's
// error, and the run still ends.
func TestEvLoadDialFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connect is refused
	ev, _ := newTestEvLoad(t, "http://"+addr+"/", 2)
	res, err := ev.run(t.Context(), 2000, 10*time.Millisecond) // 20 arrivals
	if err != nil || res.Measured != 0 || res.errorCount() != 20 || res.Errors["connection refused"] != 20 {
		t.Errorf("run: %v, %d measured, errors %v; want 20× connection refused", err, res.Measured, res.Errors)
	}
}

// newTestEvLoad is an evLoad POSTing a small body to url over at most
// conns connections, expecting 202, and the count of messages it got
// accepted; closed when the test ends.
func newTestEvLoad(t *testing.T, url string, conns int) (*evLoad, *atomic.Int64) {
	t.Helper()
	msgs := new(atomic.Int64)
	p, err := newRawPoster(LoadSpec{URL: url, Body: `{"message":"hi"}`, Want: http.StatusAccepted}, conns, msgs)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := newEvLoad(p, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.close)
	return ev, msgs
}
