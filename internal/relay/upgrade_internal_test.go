package relay

import (
	"net"
	"testing"
)

// TestUpgradedConn checks that bytes read past the handshake come first.
// Corking is CorkConn's (TestCorkConn).
func TestUpgradedConn(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := &upgradedConn{CorkConn: CorkConn{Conn: a}, rest: []byte("xy")}
	go b.Write([]byte("z"))
	got := make([]byte, 8)
	n, _ := uc.Read(got)
	m, _ := uc.Read(got[n:])
	if string(got[:n+m]) != "xyz" || n != 2 {
		t.Fatalf("read %q (%d first), want xy then z", got[:n+m], n)
	}
}
