package relay

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// tapConn is the TCP connection under a pooled WebSocket (below TLS, when
// there is TLS). It lets the conn's writer
//
//   - cork: hold the frames of several queued messages and hand them to the
//     kernel in one write (coalescing; every message stays its own frame);
//   - tell a frame that never reached the socket from one that did, wholly
//     or in part (at most once: only the former may be retried elsewhere);
//   - read how many written bytes the peer has not acknowledged yet
//     (SIOCOUTQ on Linux), to cap them and to notice a peer that stopped
//     reading.
//
// coder/websocket serialises its own writes (data frames, pings, the close
// frame), but cork and flush come from the pool's writer outside that lock,
// so mu guards the buffer.
type tapConn struct {
	net.Conn
	// outq reads SIOCOUTQ; nil when the dialler did not return a
	// *net.TCPConn or the platform cannot tell. Only the writer calls it.
	outq *outqReader

	mu     sync.Mutex
	corked bool
	buf    []byte // corked bytes; reused

	written atomic.Uint64 // bytes accepted by the kernel since the dial
}

// Write implements net.Conn: buffered while corked, else written through.
func (t *tapConn) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.corked {
		t.buf = append(t.buf, p...)
		return len(p), nil
	}
	n, err := t.Conn.Write(p)
	t.written.Add(uint64(n))
	return n, err
}

// cork starts buffering writes.
func (t *tapConn) cork() {
	t.mu.Lock()
	t.corked = true
	t.mu.Unlock()
}

// pending is the number of corked bytes.
func (t *tapConn) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buf)
}

// flush writes the corked bytes with one write, stops buffering and
// returns how many of them the kernel accepted.
func (t *tapConn) flush() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.corked = false
	if len(t.buf) == 0 {
		return 0, nil
	}
	n, err := t.Conn.Write(t.buf)
	t.written.Add(uint64(n))
	if cap(t.buf) > maxCorkBuf {
		t.buf = nil // a huge batch once; do not keep its buffer
	} else {
		t.buf = t.buf[:0]
	}
	return n, err
}

// maxCorkBuf is the largest cork buffer kept from one batch to the next:
// a batch holds up to maxCorkBytes of messages plus their frame headers,
// and append may have grown the buffer past that.
const maxCorkBuf = 2 * maxCorkBytes

// release drops the cork buffer if it grew past a small one, for an idle
// connection not to keep the capacity of its largest batch; the next
// batch grows a new one.
func (t *tapConn) release() {
	t.mu.Lock()
	if !t.corked && cap(t.buf) > minCorkBuf {
		t.buf = nil
	}
	t.mu.Unlock()
}

// minCorkBuf is the cork buffer an idle connection may keep.
const minCorkBuf = 4 << 10

// unsent reports the bytes written to the socket that the peer has not
// acknowledged, and false when the platform cannot tell.
func (t *tapConn) unsent() (int, bool) {
	if t.outq == nil {
		return 0, false
	}
	return t.outq.read()
}

// tapKey carries a *tapSlot from dialInto to the dial hook.
type tapKey struct{}

// tapSlot receives the tapConn the dial hook made for one pool dial.
type tapSlot struct {
	conn       *tapConn
	sendBuffer int // SetWriteBuffer value; 0 leaves the kernel default
}

// tappedClient returns a client that dials like c but wraps every TCP
// connection it opens for a pool dial (one with a *tapSlot in its context)
// in a tapConn. ok is false when c's Transport is not an *http.Transport:
// the pool then works without a tap (no coalescing, no unsent-bytes
// watch, and a failed write is never retried elsewhere).
func tappedClient(c *http.Client) (_ *http.Client, ok bool) {
	tr, ok := c.Transport.(*http.Transport)
	if c.Transport == nil {
		tr, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		return c, false
	}
	tr = tr.Clone()
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nc, err
		}
		slot, _ := ctx.Value(tapKey{}).(*tapSlot)
		if slot == nil {
			return nc, nil
		}
		t := &tapConn{Conn: nc}
		if tc, isTCP := nc.(*net.TCPConn); isTCP {
			t.outq = newOutqReader(tc)
			if slot.sendBuffer > 0 {
				_ = tc.SetWriteBuffer(slot.sendBuffer)
			}
		}
		slot.conn = t
		return t, nil
	}
	cc := *c
	cc.Transport = tr
	return &cc, true
}
