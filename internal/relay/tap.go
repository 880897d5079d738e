package relay

import (
	"context"
	"net"
	"net/http"
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
// The corking is CorkConn's, over a countingConn that counts what the
// kernel accepted.
type tapConn struct {
	CorkConn
	// outq reads SIOCOUTQ; nil when the dialler did not return a
	// *net.TCPConn or the platform cannot tell. Only the writer calls it.
	outq *outqReader

	written atomic.Uint64 // bytes accepted by the kernel since the dial
}

// newTapConn wraps nc.
func newTapConn(nc net.Conn) *tapConn {
	t := &tapConn{}
	t.Conn = countingConn{Conn: nc, n: &t.written}
	return t
}

// countingConn adds the bytes each write hands to the kernel to n.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(uint64(n))
	return n, err
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
		t := newTapConn(nc)
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
