package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// serveWithUnusedConn serves on 127.0.0.1:0 and opens one TCP connection
// that sends nothing (as a browser's preconnect does), returning once the
// server has accepted it.
func serveWithUnusedConn(t *testing.T, track bool) (*http.Server, net.Conn) {
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
		trackNewConns(srv)
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
	srv, _ := serveWithUnusedConn(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("untracked: Shutdown = %v; net/http no longer waits for StateNew conns, trackNewConns may go", err)
	}

	srv, c := serveWithUnusedConn(t, true)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("tracked: Shutdown = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("tracked: Shutdown took %v", d)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the unused connection is still open: %v", err)
	}
}
