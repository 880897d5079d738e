package emulator

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// corkListener wraps every accepted connection in a corkConn, so that a
// control channel can send a request command and its body message with
// one write (one syscall, one wake-up of the listener) instead of two.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// corkConn gathers writes between Cork and Uncork and sends them with one
// write. wmu also orders writes, which gorilla/websocket already
// serialises per connection.
type corkConn struct {
	net.Conn

	wmu    sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Cork gathers writes until Uncork.
func (c *corkConn) Cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
}

// Uncork writes what was gathered, by deadline.
func (c *corkConn) Uncork(deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(deadline)
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 256<<10 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// SetLinger is the TCP connection's, for abortConn.
func (c *corkConn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return nil
}

// corkOf is the corkConn under c (a WebSocket's NetConn, possibly TLS), or
// nil.
func corkOf(c net.Conn) *corkConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*corkConn)
	return cc
}
