package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// inlineTransport is HTTPSender's round tripper for the common request: a
// small body of known length, no proxy. It writes the request and reads
// the response on the caller's goroutine, over keep-alive connections of
// its own, with net/http's request writer and response reader.
//
// net/http's Transport hands every exchange to two goroutines of the
// connection's (a writer and a reader) and back: three wake-ups per
// request, which in request mode cost the gateway about a third of its
// CPU per request (profiled under load on 2 cores). The relay is the one
// peer, and the exchange is request, then response, so the hand-offs buy
// nothing here.
//
// Everything else goes through base: a proxied request (base.Proxy), a
// body over inlineMaxBody or of unknown length (a rendezvous or a stream,
// which net/http writes while it reads an early answer), Expect:
// 100-continue, any scheme but http and https. From base it also takes
// DialContext, TLSClientConfig, TLSHandshakeTimeout, MaxIdleConnsPerHost
// and IdleConnTimeout. Requests are HTTP/1.1: the relay's diagnostics are
// its reason phrases, which HTTP/2 does not carry.
//
// What it gives up against net/http: a connection is only read while a
// request is on it, so one the relay closed while idle is noticed when it
// is next taken (peekClosed, one non-blocking read), not when it closes.
// As net/http, it never sends a request twice: a failure after the
// request was written is the caller's error.
type inlineTransport struct {
	base *http.Transport

	// Guarded by mu.
	mu    sync.Mutex
	idle  map[string][]*inlineConn // by scheme and host, the newest last
	sweep *time.Timer              // closes what stayed idle IdleConnTimeout
}

// inlineMaxBody is the largest request body sent inline: the relay's
// inline limit (larger bodies go through a rendezvous), small enough for
// the socket's buffer, so the write never waits on the relay's reading.
const inlineMaxBody = 64 << 10

// inlineConn is one keep-alive connection to the relay.
type inlineConn struct {
	key    string
	nc     net.Conn // the TCP or TLS connection
	tcp    net.Conn // under nc: what peekClosed reads
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newInlineTransport(base *http.Transport) *inlineTransport {
	return &inlineTransport{base: base, idle: map[string][]*inlineConn{}}
}

// inlineTransports holds one inlineTransport per base, so that senders
// sharing a client share its connections.
var inlineTransports sync.Map // *http.Transport → *inlineTransport

// inlineFor is base's inlineTransport.
func inlineFor(base *http.Transport) *inlineTransport {
	if t, ok := inlineTransports.Load(base); ok {
		return t.(*inlineTransport)
	}
	t, _ := inlineTransports.LoadOrStore(base, newInlineTransport(base))
	return t.(*inlineTransport)
}

// inline reports whether req is one that RoundTrip takes itself.
func (t *inlineTransport) inline(req *http.Request) bool {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.ContentLength > inlineMaxBody) {
		return false
	}
	if req.Header.Get("Expect") != "" || len(req.TransferEncoding) > 0 {
		return false
	}
	if t.base.Proxy != nil {
		if u, err := t.base.Proxy(req); u != nil || err != nil {
			return false
		}
	}
	return true
}

// RoundTrip implements http.RoundTripper.
func (t *inlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.inline(req) {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	c, err := t.conn(ctx, req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	// Cancelling ctx (or its deadline) ends a blocked write or read, and
	// with it the exchange; until the response's body is read or closed.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.exchange(req)
	if err != nil {
		stop()
		c.nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	b := &inlineBody{t: t, c: c, stop: stop, r: resp.Body, keep: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.done(true)
	} else {
		resp.Body = b
	}
	return resp, nil
}

// exchange writes req and reads its response, skipping 1xx answers.
func (c *inlineConn) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// closeBody closes req's body, as a RoundTripper must even on failure.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// conn returns an idle connection to req's host that the relay has not
// closed, or a new one.
func (t *inlineTransport) conn(ctx context.Context, req *http.Request) (*inlineConn, error) {
	addr := canonicalHost(req)
	key := req.URL.Scheme + "://" + addr
	for {
		c := t.takeIdle(key)
		if c == nil {
			break
		}
		if c.br.Buffered() == 0 && !peekClosed(c.tcp) {
			return c, nil
		}
		c.nc.Close()
	}
	return t.dial(ctx, req, key, addr)
}

// canonicalHost is req's host with its port.
func canonicalHost(req *http.Request) string {
	host := req.URL.Host
	if req.URL.Port() == "" {
		port := "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(req.URL.Hostname(), port)
	}
	return host
}

// dial connects to addr (host:port) for req, with TLS for https.
func (t *inlineTransport) dial(ctx context.Context, req *http.Request, key, addr string) (*inlineConn, error) {
	dial := t.base.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	tcp, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc := tcp
	if req.URL.Scheme == "https" {
		cfg := &tls.Config{}
		if t.base.TLSClientConfig != nil {
			cfg = t.base.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		hctx := ctx
		if d := t.base.TLSHandshakeTimeout; d > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		tc := tls.Client(tcp, cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			tcp.Close()
			return nil, err
		}
		nc = tc
	}
	return &inlineConn{key: key, nc: nc, tcp: tcp, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// takeIdle removes and returns the newest idle connection to key that has
// not been idle too long, or nil.
func (t *inlineTransport) takeIdle(key string) *inlineConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.idle[key]
	if len(l) == 0 {
		return nil
	}
	c := l[len(l)-1]
	l[len(l)-1] = nil
	t.idle[key] = l[:len(l)-1]
	return c
}

// putIdle keeps c for the next request to its host, unless as many are
// idle already.
func (t *inlineTransport) putIdle(c *inlineConn) {
	max := t.base.MaxIdleConnsPerHost
	if max <= 0 {
		max = http.DefaultMaxIdleConnsPerHost
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle[c.key]) >= max {
		c.nc.Close()
		return
	}
	c.idleAt = time.Now()
	t.idle[c.key] = append(t.idle[c.key], c)
	if d := t.base.IdleConnTimeout; d > 0 && t.sweep == nil {
		t.sweep = time.AfterFunc(d, t.closeExpired)
	}
}

// closeExpired closes the connections idle for IdleConnTimeout and runs
// again while any stay idle.
func (t *inlineTransport) closeExpired() {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.base.IdleConnTimeout
	t.sweep = nil
	var next time.Time
	for key, l := range t.idle {
		kept := l[:0]
		for _, c := range l {
			if time.Since(c.idleAt) >= d {
				c.nc.Close()
				continue
			}
			kept = append(kept, c)
			if next.IsZero() || c.idleAt.Before(next) {
				next = c.idleAt
			}
		}
		clear(l[len(kept):])
		t.idle[key] = kept
	}
	if !next.IsZero() {
		t.sweep = time.AfterFunc(time.Until(next.Add(d)), t.closeExpired)
	}
}

// CloseIdleConnections closes the idle connections, its own and base's
// (http.Client.CloseIdleConnections calls it).
func (t *inlineTransport) CloseIdleConnections() {
	t.mu.Lock()
	for key, l := range t.idle {
		for _, c := range l {
			c.nc.Close()
		}
		delete(t.idle, key)
	}
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	t.base.CloseIdleConnections()
}

// inlineBody is a response's body: read to its end, it gives the
// connection back (unless either side asked to close it); closed before,
// it closes the connection, as net/http does.
type inlineBody struct {
	t    *inlineTransport
	c    *inlineConn
	stop func() bool // ends the context's watch over the connection
	keep bool

	mu       sync.Mutex
	r        io.ReadCloser
	reading  bool // a Read is under way (a Close then only closes the connection)
	finished bool // the connection is settled
	eof      bool // by reading to the end: Read goes on returning io.EOF
}

func (b *inlineBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.finished {
		err := errBodyClosed
		if b.eof {
			err = io.EOF
		}
		b.mu.Unlock()
		return 0, err
	}
	r := b.r
	b.reading = true
	b.mu.Unlock()
	n, err := r.Read(p)
	b.mu.Lock()
	b.reading = false
	b.mu.Unlock()
	if err != nil {
		b.done(err == io.EOF)
	}
	return n, err
}

// errBodyClosed is a Read after the body was closed.
var errBodyClosed = errors.New("relay: read on a closed response body")

// Close gives the connection back if what is left of the body is small
// and already on its way (the caller stopped short of io.EOF, as a JSON
// decoder does), and closes it otherwise.
func (b *inlineBody) Close() error {
	b.mu.Lock()
	r, finished, reading := b.r, b.finished, b.reading
	b.mu.Unlock()
	if finished {
		return nil
	}
	if reading {
		b.done(false)
		return nil
	}
	n, err := io.CopyN(io.Discard, r, maxDrain+1)
	b.done(err == io.EOF && n <= maxDrain)
	return nil
}

// maxDrain is the most of a body that Close reads to keep its connection.
const maxDrain = 4 << 10

// done settles the connection once: back to the idle pool when the body
// was read to its end and the context never fired, closed otherwise.
func (b *inlineBody) done(atEOF bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished, b.eof = true, atEOF
	if b.stop() && atEOF && b.keep {
		b.t.putIdle(b.c)
		return
	}
	b.c.nc.Close()
}
