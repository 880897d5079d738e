package relay

import (
	"net"
	"sync"
	"time"
)

// CorkConn is a net.Conn whose writes can be corked: between Cork and
// Uncork they are gathered, and Uncork sends them with one write, so
// several WebSocket frames (a command and its body, a batch of commands)
// cost one syscall and one wake-up of the peer. Uncorked, Write writes
// through.
//
// Its mutex also orders writes: the WebSocket libraries serialise their
// own frames, and it keeps a corked batch and a frame written meanwhile
// by another goroutine (a pong, say) whole and in order. Safe for
// concurrent use; use it by pointer.
type CorkConn struct {
	net.Conn

	// Guarded by wmu.
	wmu    sync.Mutex
	corked bool
	buf    []byte // gathered writes; reused up to maxCorkBuffer
}

// maxCorkBuffer is the largest gathering buffer kept between batches.
const maxCorkBuffer = 256 << 10

// Write gathers p while corked and writes it through otherwise.
func (c *CorkConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Cork gathers writes until Uncork.
func (c *CorkConn) Cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
}

// Uncork stops gathering and writes what was gathered since Cork with one
// write, which must end by deadline. The write deadline is cleared after
// that write; nothing is written, and no deadline set, when nothing was
// gathered.
func (c *CorkConn) Uncork(deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.buf) == 0 {
		c.corked = false
		return nil
	}
	c.Conn.SetWriteDeadline(deadline)
	_, err := c.flushLocked()
	c.Conn.SetWriteDeadline(time.Time{})
	return err
}

// flush is Uncork without a deadline (the caller bounds the write its own
// way); it returns how many gathered bytes the write took.
func (c *CorkConn) flush() (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *CorkConn) flushLocked() (int, error) {
	c.corked = false
	if len(c.buf) == 0 {
		return 0, nil
	}
	n, err := c.Conn.Write(c.buf)
	if cap(c.buf) > maxCorkBuffer {
		c.buf = nil // a huge batch once; do not keep its buffer
	} else {
		c.buf = c.buf[:0]
	}
	return n, err
}

// pending is the number of gathered bytes.
func (c *CorkConn) pending() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.buf)
}

// shrink drops the gathering buffer if it is not in use and grew past
// keep bytes, for an idle connection not to hold the capacity of its
// largest batch; the next batch grows a new one.
func (c *CorkConn) shrink(keep int) {
	c.wmu.Lock()
	if !c.corked && cap(c.buf) > keep {
		c.buf = nil
	}
	c.wmu.Unlock()
}
