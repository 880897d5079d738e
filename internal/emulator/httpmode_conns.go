package emulator

import (
	"net"
	"net/http"
	"sync"
)

// newConns tracks the server's connections that have not sent a request
// yet. Request-mode senders keep connections alive, and a client's
// transport may dial one more than it ends up using; http.Server.Shutdown
// waits 5 s for such a connection before it counts as idle, so Close
// closes them at once instead.
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// hook is the http.Server's ConnState.
func (n *newConns) hook(c net.Conn, s http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == http.StateNew {
		if n.m == nil {
			n.m = map[net.Conn]struct{}{}
		}
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
