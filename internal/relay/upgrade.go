package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
)

// upgradeTransport performs WebSocket handshakes on a connection it dials
// itself, so the upgraded connection carries nothing of net/http: an
// http.Transport hands coder/websocket its persistConn's net.Conn only
// after starting a read and a write goroutine and allocating 8 KiB of
// buffers per dial, and an idle pool of 64 connections kept about 20 KiB
// each of that (stacks of exited goroutines and buffers awaiting the GC).
// Here a dial costs the request bytes, a 1 KiB read buffer and the TLS
// state, if any.
//
// It dials as tr would: tr's DialContext, DialTLSContext and
// TLSClientConfig. A request that tr's Proxy sends through a proxy goes
// to tr itself.
type upgradeTransport struct {
	tr *http.Transport
	// onConn, if set, is given each upgraded connection (for corking).
	onConn func(*upgradedConn)
}

// handshakeReadBuffer is the read buffer of the handshake response: lines
// longer than it are still read whole.
const handshakeReadBuffer = 1 << 10

// upgradeClient returns c with its *http.Transport wrapped in an
// upgradeTransport; a client with another RoundTripper is returned as is.
func upgradeClient(c *http.Client) *http.Client {
	return upgradeClientFunc(c, nil)
}

// upgradeClientFunc is upgradeClient with onConn called with the upgraded
// connection of each successful handshake (none through a proxy).
func upgradeClientFunc(c *http.Client, onConn func(*upgradedConn)) *http.Client {
	if c == nil {
		c = dialClient
	}
	tr, ok := c.Transport.(*http.Transport)
	if c.Transport == nil {
		tr, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		return c
	}
	uc := *c
	uc.Transport = upgradeTransport{tr: tr, onConn: onConn}
	return &uc
}

// RoundTrip sends the handshake req on a new connection and reads the
// response. A 101's Body is the connection itself (with any bytes read
// past the response); any other response's Body closes the connection.
func (u upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if u.tr.Proxy != nil {
		if p, err := u.tr.Proxy(req); err != nil || p != nil {
			return u.tr.RoundTrip(req)
		}
	}
	ctx := req.Context()
	conn, err := u.dial(ctx, req)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // unblocks the handshake
	resp, err := handshake(conn, req)
	if !stop() {
		conn.Close()
		return nil, context.Cause(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	if uc, ok := resp.Body.(*upgradedConn); ok && u.onConn != nil {
		u.onConn(uc)
	}
	return resp, nil
}

// handshake writes req on conn and reads the response.
func handshake(conn net.Conn, req *http.Request) (*http.Response, error) {
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, err
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, handshakeReadBuffer)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &closeConnBody{ReadCloser: resp.Body, conn: conn}
		return resp, nil
	}
	uc := &upgradedConn{CorkConn: CorkConn{Conn: conn}}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		uc.rest = bytes.Clone(b)
	}
	resp.Body = uc
	return resp, nil
}

// dial opens the TCP (or TLS) connection for req as u.tr would.
func (u upgradeTransport) dial(ctx context.Context, req *http.Request) (net.Conn, error) {
	host, port := req.URL.Hostname(), req.URL.Port()
	tlsOn := req.URL.Scheme == "https"
	if port == "" {
		port = "80"
		if tlsOn {
			port = "443"
		}
	}
	addr := net.JoinHostPort(host, port)
	if tlsOn && u.tr.DialTLSContext != nil {
		return u.tr.DialTLSContext(ctx, "tcp", addr)
	}
	dial := u.tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil || !tlsOn {
		return conn, err
	}
	cfg := &tls.Config{}
	if u.tr.TLSClientConfig != nil {
		cfg = u.tr.TLSClientConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = nil // HTTP/1.1: an upgrade has no HTTP/2 form here
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// upgradedConn is an upgraded connection that first returns the bytes read
// past the handshake response. It can be corked (CorkConn), so the
// listener sends a batch of commands with one write.
type upgradedConn struct {
	CorkConn
	rest []byte // owned by the reader
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes a TCP connection, as net/http's upgraded body does.
func (c *upgradedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// closeConnBody closes the connection with a refused handshake's body.
type closeConnBody struct {
	io.ReadCloser
	conn net.Conn
}

func (b *closeConnBody) Close() error {
	err := b.ReadCloser.Close()
	b.conn.Close()
	return err
}
