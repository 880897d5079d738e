package relay

import (
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// outqReader reads SIOCOUTQ (bytes in the send queue not yet acknowledged
// by the peer) without allocating: the control function is bound once.
type outqReader struct {
	mu  sync.Mutex
	rc  syscall.RawConn
	fn  func(fd uintptr)
	n   int
	err error
}

func newOutqReader(c *net.TCPConn) *outqReader {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &outqReader{rc: rc}
	r.fn = r.control
	return r
}

func (r *outqReader) control(fd uintptr) { r.n, r.err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }

func (r *outqReader) read() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.rc.Control(r.fn); err != nil || r.err != nil {
		return 0, false
	}
	return r.n, true
}
