// Package conntrack closes, once an http.Server's shutdown has started, the
// connections that have not sent a request yet.
//
// http.Server.Shutdown counts a connection in StateNew as busy until it is
// 5 seconds old. Browsers open such sockets speculatively (preconnects),
// and an HTTP client's transport may dial one more connection than it ends
// up using, so one such socket could hold up a shutdown for 5 s. Closing
// them loses nothing: net/http drops, unanswered, any request it reads once
// Shutdown has started, and during a grace a request already on its way is
// read and dropped just as it would be without this (the client sees the
// same EOF).
//
// It imports nothing from this module.
package conntrack

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// CloseNewOnShutdown installs on srv a ConnState hook (chaining any hook
// already set) that tracks the connections in StateNew, and a
// RegisterOnShutdown function that closes those still in StateNew grace
// after Shutdown (or Close) starts; at once when grace is 0. Call it
// before srv serves.
func CloseNewOnShutdown(srv *http.Server, grace time.Duration) {
	n := &newConns{m: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		n.track(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	srv.RegisterOnShutdown(func() {
		if grace <= 0 {
			n.closeAll()
			return
		}
		time.AfterFunc(grace, n.closeAll)
	})
}

// newConns is the set of connections that have not sent a request yet.
// Safe for concurrent use.
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the ConnState hook.
func (n *newConns) track(c net.Conn, s http.ConnState) {
	if s == http.StateIdle {
		return // only after StateActive, which removed c: skip the lock once per request
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == http.StateNew {
		n.m[c] = struct{}{}
	} else {
		delete(n.m, c)
	}
}

// closeAll closes every connection still waiting for its first request.
func (n *newConns) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.m {
		_ = c.Close()
	}
	clear(n.m)
}
