package gateway

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// unusedConnGrace is how long connections that have not sent a request
// yet are left open once shutdown has started.
const unusedConnGrace = time.Second

// newConns tracks the connections of an http.Server that have not sent a
// request yet. Browsers (the console, for one) open such sockets
// speculatively, and http.Server.Shutdown counts a connection in
// StateNew as busy until it is 5 seconds old, so one open console could
// hold up a shutdown for 5 s. A grace period after Shutdown starts, the
// connections still in StateNew are closed. That loses nothing: net/http
// drops, unanswered, any request it reads once Shutdown has started, and
// during the grace a request already on its way is read and dropped just
// as it would be without this (the client sees the same EOF). Safe for
// concurrent use.
type newConns struct {
	grace time.Duration

	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// trackNewConns installs a newConns on srv (ConnState, chaining any hook
// already set, and RegisterOnShutdown). Call it before srv serves.
func trackNewConns(srv *http.Server, grace time.Duration) *newConns {
	n := &newConns{grace: grace, m: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		n.track(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	srv.RegisterOnShutdown(func() { time.AfterFunc(n.grace, n.closeAll) })
	return n
}

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
		delete(n.m, c)
	}
}
