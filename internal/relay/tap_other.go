//go:build !linux

package relay

import "net"

// outqReader cannot read the send queue on this platform.
type outqReader struct{}

func newOutqReader(*net.TCPConn) *outqReader { return nil }

func (*outqReader) read() (int, bool) { return 0, false }
