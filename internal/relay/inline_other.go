//go:build !unix

package relay

import "net"

// peekClosed cannot tell here; a closed connection fails its next request.
func peekClosed(net.Conn) bool { return false }
