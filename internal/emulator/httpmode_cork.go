package emulator

import (
	"crypto/tls"
	"net"

	"github.com/relaygate/relaygate/internal/relay"
)

// corkListener wraps every accepted connection in a relay.CorkConn, so
// that a control channel can send a request command and its body message
// with one write (one syscall, one wake-up of the listener) instead of
// two.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &relay.CorkConn{Conn: c}, nil
}

// corkOf is the CorkConn under c (a WebSocket's NetConn, possibly TLS), or
// nil.
func corkOf(c net.Conn) *relay.CorkConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*relay.CorkConn)
	return cc
}
