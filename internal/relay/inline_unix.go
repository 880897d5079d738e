//go:build unix

package relay

import (
	"net"
	"syscall"
)

// peekClosed reports whether the peer closed c, or sent on it, while it
// was idle: a keep-alive connection then has nothing to read, and a
// non-blocking peek says so without consuming anything.
func peekClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			// n == 0 without an error is the peer's FIN; n > 0 is data
			// nobody asked for; EAGAIN is an idle, open connection.
			closed = err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
			return true
		}
	})
	return closed || err != nil
}
