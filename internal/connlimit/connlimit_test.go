package connlimit_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/connlimit"
)

const testTimeout = 10 * time.Second

// server serves h on a real http.Server on 127.0.0.1:0 behind a Listener
// capped at max.
func server(t *testing.T, max int, h http.Handler) (*connlimit.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: testTimeout}
	l := connlimit.Wrap(ln, max, srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return l, ln.Addr().String()
}

// client is one raw keep-alive connection.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return &client{c: c, r: bufio.NewReader(c)}
}

// get sends one request and reads the response body; the connection stays
// open (keep-alive).
func (c *client) get(path string) (string, error) {
	if _, err := fmt.Fprintf(c.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func handler(blocked chan<- struct{}, release <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		blocked <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	return mux
}

// TestIdleConnectionsMakeRoom: at the cap of 20, held by idle keep-alive
// clients, /healthz from a new client is still answered: the longest-idle
// connection is closed to make room, and no more than 20 are ever open.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	t.Parallel()
	l, addr := server(t, 20, handler(nil, nil))
	var idle []*client
	for range 20 {
		c := dial(t, addr)
		if body, err := c.get("/healthz"); err != nil || body != "ok" {
			t.Fatalf("keep-alive client: %q %v", body, err)
		}
		idle = append(idle, c)
	}
	if n := l.Open(); n != 20 {
		t.Fatalf("open %d, want 20", n)
	}
	for i := range 5 {
		if body, err := dial(t, addr).get("/healthz"); err != nil || body != "ok" {
			t.Fatalf("new client %d at the cap: %q %v", i, body, err)
		}
		if n := l.Open(); n > 20 {
			t.Fatalf("open %d, cap 20", n)
		}
	}
	// The first idle client was the longest idle: it was closed.
	if _, err := idle[0].get("/healthz"); err == nil {
		t.Error("the longest-idle connection is still open")
	}
}

// TestBusyConnectionsMakeNewOnesWait: when all 20 connections are busy, a
// new client waits (it is not refused) until one request finishes and its
// connection, now idle, is closed to admit it.
func TestBusyConnectionsMakeNewOnesWait(t *testing.T) {
	t.Parallel()
	blocked := make(chan struct{})
	release := make(chan struct{})
	l, addr := server(t, 20, handler(blocked, release))
	busy := make(chan error, 20)
	for range 20 {
		c := dial(t, addr)
		go func() {
			_, err := c.get("/block")
			busy <- err
		}()
		<-blocked
	}
	var released atomic.Bool
	served := make(chan error, 1)
	go func() {
		body, err := dial(t, addr).get("/healthz")
		if err == nil && (body != "ok" || !released.Load()) {
			err = fmt.Errorf("served %q before any busy connection was free", body)
		}
		served <- err
	}()
	released.Store(true)
	release <- struct{}{} // one request finishes; its connection goes idle
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the waiting client was never served")
	}
	if n := l.Open(); n > 20 {
		t.Fatalf("open %d, cap 20", n)
	}
	close(release)
	for range 20 {
		<-busy
	}
}

func TestDefaultMax(t *testing.T) {
	t.Parallel()
	if n := connlimit.DefaultMax(); n < 16 {
		t.Errorf("DefaultMax() = %d, want at least 16", n)
	}
	for _, tt := range []struct {
		limit uint64
		want  int
	}{
		{0, 1024*8/10 - 64},
		{4096, 4096*8/10 - 64},
		{64, 16},
		{1 << 40, 1<<30*8/10 - 64},
	} {
		if got := connlimit.MaxFor(tt.limit); got != tt.want {
			t.Errorf("MaxFor(%d) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}
