package conntrack_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/conntrack"
)

// serveWithUnusedConn serves on 127.0.0.1:0 and opens one TCP connection
// that sends nothing (as a browser's preconnect does), returning once the
// server has accepted it. With track the server closes new conns on
// shutdown (CloseNewOnShutdown) after grace.
func serveWithUnusedConn(t *testing.T, track bool, grace time.Duration) (*http.Server, net.Conn) {
	t.Helper()
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler:           http.NotFoundHandler(),
		ReadHeaderTimeout: time.Minute,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	if track {
		conntrack.CloseNewOnShutdown(srv, grace)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not accepted")
	}
	return srv, c
}

func TestShutdownClosesUnusedConns(t *testing.T) {
	// Without the tracker, net/http waits for the unused connection.
	srv, _ := serveWithUnusedConn(t, false, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("untracked: Shutdown = %v; net/http no longer waits for StateNew conns, conntrack may go", err)
	}

	for _, grace := range []time.Duration{0, 100 * time.Millisecond} {
		srv, c := serveWithUnusedConn(t, true, grace)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("tracked, grace %v: Shutdown = %v", grace, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("grace %v: the unused connection is still open: %v", grace, err)
		}
	}
}

// TestShutdownKeepsNewConnsForTheGrace: during the grace an unused
// connection stays open (a request on its way is read, as net/http would
// without the tracker); then it is closed.
func TestShutdownKeepsNewConnsForTheGrace(t *testing.T) {
	const grace = time.Second
	srv, c := serveWithUnusedConn(t, true, grace)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	c.SetReadDeadline(time.Now().Add(grace / 2))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("closed before the grace ended: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("still open after the grace: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
