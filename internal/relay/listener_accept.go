package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// AcceptRequest describes a sender waiting to be accepted. It is built from
// the relay's accept command and holds no token.
type AcceptRequest struct {
	// ID is the relay's id for this connection.
	ID string
	// Address is the rendezvous URL. It carries the sender's path and
	// application query, which may be sensitive: do not log it.
	Address string
	// Path is the sender's path without "/$hc": "/hc1/sub/path".
	Path string
	// Query is the sender's application query (sb-hc-* removed).
	Query url.Values
	// Header holds the sender's handshake headers.
	Header http.Header
	// RemoteAddr is the sender's "ip:port" as seen by the relay.
	RemoteAddr string
}

func newAcceptRequest(cmd *AcceptCommand) *AcceptRequest {
	r := &AcceptRequest{ID: cmd.ID, Address: cmd.Address, Header: http.Header{}, Query: url.Values{}}
	for k, v := range cmd.ConnectHeaders {
		r.Header.Set(k, v)
	}
	if cmd.RemoteEndpoint.Address != "" {
		r.RemoteAddr = net.JoinHostPort(cmd.RemoteEndpoint.Address, strconv.Itoa(cmd.RemoteEndpoint.Port))
	}
	if u, err := url.Parse(cmd.Address); err == nil {
		r.Path = strings.TrimPrefix(u.Path, "/$hc")
		for k, v := range u.Query() {
			if !strings.HasPrefix(strings.ToLower(k), QueryPrefix) {
				r.Query[k] = v
			}
		}
	}
	return r
}

// firstProtocol returns the first sub-protocol the sender offered.
func (r *AcceptRequest) firstProtocol() string {
	p, _, _ := strings.Cut(r.Header.Get("Sec-WebSocket-Protocol"), ",")
	return strings.TrimSpace(p)
}

// ListenerConn is an accepted sender connection. At most one Read and one
// Write may run at a time (they may run concurrently with each other). The
// deadline or cancellation of Read's ctx ends that read and further reads
// (writes still work); the deadline of Write's ctx ends that write and
// further writes, and its cancellation closes the connection, as
// coder/websocket does. Close is safe to call at any time, also
// concurrently; the Listener closes the connection when ConnHandler
// returns.
//
// Half-close works (docs/hybrid-connections.md §5.3): when the sender
// closes its side (Read returns an error with
// websocket.CloseStatus(err) == the sender's code, 1000 for .NET's
// Shutdown), Write keeps working until Close, which sends the listener's
// own close frame.
type ListenerConn struct {
	// Static after construction.
	ws  *halfConn
	req *AcceptRequest
}

// ID is the relay's id for this connection.
func (c *ListenerConn) ID() string { return c.req.ID }

// Path is the sender's path without "/$hc" ("/hc1/sub").
func (c *ListenerConn) Path() string { return c.req.Path }

// Query is the sender's application query.
func (c *ListenerConn) Query() url.Values { return c.req.Query }

// Header holds the sender's handshake headers.
func (c *ListenerConn) Header() http.Header { return c.req.Header }

// RemoteAddr is the sender's address as reported by the relay.
func (c *ListenerConn) RemoteAddr() string { return c.req.RemoteAddr }

// Subprotocol is the negotiated sub-protocol ("" if none).
func (c *ListenerConn) Subprotocol() string { return c.ws.Subprotocol() }

// Read reads one whole message (up to the listener's ReadLimit).
func (c *ListenerConn) Read(ctx context.Context) (MessageType, []byte, error) {
	return c.ws.Read(ctx)
}

// Write writes one message, also after the sender has closed its side.
func (c *ListenerConn) Write(ctx context.Context, typ MessageType, data []byte) error {
	return c.ws.Write(ctx, typ, data)
}

// Close sends a close frame with code and reason (≤ 123 bytes) and waits
// briefly for the peer's.
func (c *ListenerConn) Close(code websocket.StatusCode, reason string) error {
	return c.ws.Close(code, reason)
}

// handleAccept answers one accept command: ask AcceptHandler, then dial the
// rendezvous (accept) or the reject URL, and run ConnHandler.
func (l *Listener) handleAccept(ctx context.Context, cmd *AcceptCommand) {
	req := newAcceptRequest(cmd)
	log := l.log.With("id", cmd.ID)
	accept, status, desc := true, 0, ""
	switch {
	case l.cfg.ConnHandler == nil:
		accept, status, desc = false, http.StatusNotImplemented, "This listener does not accept WebSocket connections"
	case l.cfg.AcceptHandler != nil:
		accept, status, desc = l.callAcceptHandler(req)
	}
	dctx, cancel := context.WithTimeout(ctx, l.cfg.AcceptTimeout)
	defer cancel()
	if !accept {
		if status < 300 || status > 599 {
			status = http.StatusBadRequest
		}
		if desc == "" {
			desc = "Rejected by user code"
		}
		err := l.reject(dctx, cmd.Address, status, desc)
		if err != nil {
			log.Warn("reject failed", "status", status, "err", err)
			return
		}
		log.Info("sender rejected", "status", status)
		return
	}
	var protocols []string
	if p := req.firstProtocol(); p != "" {
		protocols = []string{p}
	}
	ws, err := dialHalfConn(dctx, cmd.Address, protocols, l.cfg.HTTPClient, l.cfg.ReadLimit)
	if err != nil {
		log.Warn("accept rendezvous failed", "err", err)
		return
	}
	cancel()
	c := &ListenerConn{ws: ws, req: req}
	log.Info("sender accepted", "subprotocol", ws.Subprotocol())
	defer func() {
		if ctx.Err() != nil {
			ws.Close(websocket.StatusGoingAway, "listener closing")
		} else {
			ws.Close(websocket.StatusNormalClosure, "")
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			log.Error("connection handler panicked", "panic", fmt.Sprint(p))
			ws.Close(websocket.StatusInternalError, "listener error")
		}
	}()
	l.cfg.ConnHandler(ctx, c)
}

func (l *Listener) callAcceptHandler(req *AcceptRequest) (accept bool, status int, desc string) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("accept handler panicked", "id", req.ID, "panic", fmt.Sprint(p))
			accept, status, desc = false, http.StatusBadGateway, "The listener failed to handle the connection"
		}
	}()
	return l.cfg.AcceptHandler(req)
}

// reject dials the reject form of address; the relay answers 410 Gone on
// success and hands status and desc to the sender.
func (l *Listener) reject(ctx context.Context, address string, status int, desc string) error {
	ws, err := dialURL(ctx, WithRejectStatus(address, status, desc), ActionAccept, &websocket.DialOptions{HTTPClient: l.cfg.HTTPClient}, "")
	if err == nil {
		ws.CloseNow()
		return errors.New("relay: reject was answered with an upgrade")
	}
	var re *StatusError
	if errors.As(err, &re) && re.StatusCode == http.StatusGone {
		return nil
	}
	return err
}
