// Package connlimit caps the connections an http.Server holds open, so
// idle keep-alive clients cannot use up the process's file descriptors
// (then accept fails and every new client, probes included, times out).
// At the cap, the longest-idle keep-alive connection is closed to admit a
// new one; only when no connection is idle does Accept wait for one to
// finish a request or close.
//
// It imports nothing from this module.
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a net.Listener that keeps at most Max connections open. It
// learns which connections are idle from the http.Server's ConnState
// hook, installed by Wrap. Accept is meant for one goroutine (as
// http.Server calls it); the other methods are safe for concurrent use.
type Listener struct {
	net.Listener
	max int

	// waiting is set while Accept waits at the cap for a connection to
	// go idle or close; only then does a connection going idle take mu.
	waiting atomic.Bool

	// Guarded by mu.
	mu     sync.Mutex
	open   int
	conns  map[*conn]struct{} // the open connections
	closed bool
	wake   chan struct{} // closed and replaced whenever a slot may have freed or a conn went idle
}

// Wrap returns a Listener admitting at most max connections from ln and
// installs its ConnState hook on srv (chaining any hook already set).
// Call it before srv serves, and serve the returned Listener.
func Wrap(ln net.Listener, max int, srv *http.Server) *Listener {
	l := &Listener{Listener: ln, max: max, conns: map[*conn]struct{}{}, wake: make(chan struct{})}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		nc := c
		if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
			nc = tc.NetConn() // *tls.Conn
		}
		if cc, ok := nc.(*conn); ok {
			l.track(cc, s)
		}
		if prev != nil {
			prev(c, s)
		}
	}
	return l
}

// Max is the connection cap.
func (l *Listener) Max() int { return l.max }

// Open is the number of connections currently open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept waits for a free slot, closing the longest-idle connection when
// there is none, then accepts the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	if err := l.reserve(); err != nil {
		return nil, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	cc := &conn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[cc] = struct{}{}
	l.mu.Unlock()
	return cc, nil
}

// reserve takes a slot. At the cap it closes the longest-idle connection
// (whose Close frees a slot), or waits until a connection goes idle or
// closes.
func (l *Listener) reserve() error {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return net.ErrClosed
		}
		if l.open < l.max {
			l.open++
			l.waiting.Store(false)
			l.mu.Unlock()
			return nil
		}
		// Set before the scan: a connection going idle after it sees
		// waiting and wakes this loop (both are sequentially consistent).
		l.waiting.Store(true)
		victim := l.oldestIdle()
		wake := l.wake
		l.mu.Unlock()
		if victim != nil {
			victim.Close() // frees a slot; never called with mu held
			continue
		}
		<-wake
	}
}

// oldestIdle claims and returns the longest-idle connection, or nil.
// Called with mu held; a linear scan is fine, it runs only at the cap.
func (l *Listener) oldestIdle() *conn {
	for {
		var victim *conn
		var since int64
		for c := range l.conns {
			if t := c.idleSince.Load(); t != 0 && (victim == nil || t < since) {
				victim, since = c, t
			}
		}
		// Claimed unless it went active (or idle again) since the scan.
		if victim == nil || victim.idleSince.CompareAndSwap(since, 0) {
			return victim
		}
	}
}

// release frees a slot and wakes a waiting Accept.
func (l *Listener) release() {
	l.mu.Lock()
	l.open--
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *Listener) wakeLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// track records whether c is idle between requests. It runs twice per
// request, so it takes no lock unless Accept is waiting for an idle
// connection.
func (l *Listener) track(c *conn, s http.ConnState) {
	if s != http.StateIdle {
		c.idleSince.Store(0)
		return
	}
	c.idleSince.Store(time.Now().UnixNano())
	if l.waiting.Load() {
		l.mu.Lock()
		l.wakeLocked()
		l.mu.Unlock()
	}
}

// Close closes the underlying listener and wakes a waiting Accept, which
// then returns net.ErrClosed. Open connections are left to their server.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.wakeLocked()
	l.mu.Unlock()
	return l.Listener.Close()
}

// conn frees its slot on the first Close.
type conn struct {
	net.Conn
	l         *Listener
	once      sync.Once
	idleSince atomic.Int64 // Unix nanoseconds since the conn went idle between requests; 0 while not idle
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.release()
	})
	return err
}
