package main

import (
	"net"
	"net/http"
	"sync"
)

// newConns tracks the connections of an http.Server that have not sent a
// request yet. Browsers (the console, for one) open such sockets
// speculatively, and http.Server.Shutdown counts a connection in
// StateNew as busy until it is 5 seconds old, so one open console could
// hold up a shutdown for 5 s. closeAll, run when Shutdown starts, closes
// them at once: Shutdown has closed the listener already, so such a
// socket could never carry a request that gets an answer anyway. Safe for
// concurrent use.
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// trackNewConns installs a newConns on srv (ConnState, chaining any hook
// already set, and RegisterOnShutdown). Call it before srv serves.
func trackNewConns(srv *http.Server) *newConns {
	n := &newConns{m: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		n.track(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	srv.RegisterOnShutdown(n.closeAll)
	return n
}

func (n *newConns) track(c net.Conn, s http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == http.StateNew {
		n.m[c] = struct{}{}
	} else {
		delete(n.m, c)
	}
}

func (n *newConns) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.m {
		_ = c.Close()
		delete(n.m, c)
	}
}
