package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	gws "github.com/gorilla/websocket"
)

// closeWait bounds how long Close waits for the peer's close frame after
// sending its own, like coder/websocket's Close.
const closeWait = 5 * time.Second

// halfConn is the listener's end of an accepted connection. It runs on
// gorilla/websocket rather than coder/websocket because the data phase
// must support half-close (docs/hybrid-connections.md §5.3): after the
// sender's close frame (.NET's Shutdown, bridges mirroring a TCP FIN) the
// listener keeps writing until it closes itself. coder/websocket answers a
// close frame by echoing it and closing the connection at once; here the
// close handler only records it, and Close sends ours later.
//
// Concurrency: one Read and one Write at a time (they may overlap); Close
// at any time.
type halfConn struct {
	// Static after construction.
	ws         *gws.Conn
	peerClosed chan struct{} // closed when the peer's close frame arrives
	readSem    chan struct{} // one slot: held by Read, or by Close draining

	peerOnce  sync.Once
	closeOnce sync.Once
	closeErr  error // set once by Close
}

// dialHalfConn dials an accept rendezvous address (no token: the address
// is the capability) with gorilla/websocket, taking the TLS, proxy and
// dialer settings of client's *http.Transport when it has one.
func dialHalfConn(ctx context.Context, address string, subprotocols []string, client *http.Client, readLimit int64) (*halfConn, error) {
	d := gws.Dialer{Proxy: http.ProxyFromEnvironment, Subprotocols: subprotocols, HandshakeTimeout: dialTimeout}
	if client != nil {
		if tr, ok := client.Transport.(*http.Transport); ok {
			d.Proxy, d.NetDialContext, d.TLSClientConfig = tr.Proxy, tr.DialContext, tr.TLSClientConfig
		}
	}
	ws, resp, err := d.DialContext(ctx, address, nil)
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, refusal(ctx, ActionAccept, resp, err, "")
	}
	ws.SetReadLimit(readLimit)
	c := &halfConn{ws: ws, peerClosed: make(chan struct{}), readSem: make(chan struct{}, 1)}
	// Record the peer's close instead of echoing it (gorilla's default).
	ws.SetCloseHandler(func(int, string) error {
		c.peerOnce.Do(func() { close(c.peerClosed) })
		return nil
	})
	return c, nil
}

// Subprotocol is the negotiated sub-protocol.
func (c *halfConn) Subprotocol() string { return c.ws.Subprotocol() }

// Read reads one whole message. The peer's close frame gives an error
// matching coder/websocket's CloseStatus with the peer's code; the
// connection stays writable. ctx's deadline or cancellation ends the read
// (and further reads).
func (c *halfConn) Read(ctx context.Context) (MessageType, []byte, error) {
	select {
	case c.readSem <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	defer func() { <-c.readSem }()
	stop := bindDeadline(ctx, c.ws.SetReadDeadline)
	typ, data, err := c.ws.ReadMessage()
	stop()
	if err != nil {
		return 0, nil, c.wrapErr(ctx, "read", err)
	}
	return MessageType(typ), data, nil
}

// Write writes one message; it keeps working after the peer's close frame
// until Close. ctx's deadline ends the write (and further writes); its
// cancellation closes the connection, as coder/websocket does: gorilla
// keeps the write deadline in a field that only the writer may set.
func (c *halfConn) Write(ctx context.Context, typ MessageType, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline()
	_ = c.ws.SetWriteDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.ws.NetConn().Close() })
	err := c.ws.WriteMessage(int(typ), data)
	stop()
	if err != nil {
		return c.wrapErr(ctx, "write", err)
	}
	return nil
}

// Close sends a close frame with code and reason, waits up to closeWait
// for the peer's (unless it came already) and closes the TCP connection.
// Only the first call does anything; later ones return its result.
func (c *halfConn) Close(code websocket.StatusCode, reason string) error {
	c.closeOnce.Do(func() {
		msg := gws.FormatCloseMessage(int(code), reason)
		if code == websocket.StatusNoStatusRcvd {
			msg = []byte{}
		}
		err := c.ws.WriteControl(gws.CloseMessage, msg, time.Now().Add(writeTimeout))
		if err == nil {
			c.waitPeerClose()
		}
		if cerr := c.ws.NetConn().Close(); err == nil {
			err = cerr
		}
		c.closeErr = err
	})
	return c.closeErr
}

// CloseNow closes the TCP connection without a close frame.
func (c *halfConn) CloseNow() error {
	c.closeOnce.Do(func() { c.closeErr = c.ws.NetConn().Close() })
	return c.closeErr
}

// waitPeerClose waits for the peer's close frame: read by a running Read,
// or by waitPeerClose itself, discarding data, when no Read runs.
func (c *halfConn) waitPeerClose() {
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-c.peerClosed:
		return
	case <-t.C:
		return
	case c.readSem <- struct{}{}:
	}
	defer func() { <-c.readSem }()
	_ = c.ws.SetReadDeadline(time.Now().Add(closeWait))
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

// wrapErr turns gorilla's errors into the ones ListenerConn documents: a
// close frame as coder/websocket's CloseError (so websocket.CloseStatus
// works), a deadline or cancellation as ctx.Err().
func (c *halfConn) wrapErr(ctx context.Context, op string, err error) error {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("relay: %s: peer closed: %w", op, websocket.CloseError{Code: websocket.StatusCode(ce.Code), Reason: ce.Text})
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("relay: %s: %w", op, cerr)
	}
	return fmt.Errorf("relay: %s: %w", op, err)
}

// bindDeadline applies ctx's deadline through set and makes ctx's
// cancellation expire it at once (set must be safe to call concurrently
// with I/O, as net.Conn's deadlines are). After the returned stop returns,
// set is no longer called for ctx.
func bindDeadline(ctx context.Context, set func(time.Time) error) (stop func()) {
	dl, _ := ctx.Deadline()
	_ = set(dl)
	if ctx.Done() == nil {
		return func() {}
	}
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = set(time.Now())
	})
	return func() {
		if !stopAfter() {
			<-fired
		}
	}
}
