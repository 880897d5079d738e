package relay

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestUpgradedConn checks that bytes read past the handshake come first
// and that corked writes reach the peer as one write, in order.
func TestUpgradedConn(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	uc := &upgradedConn{Conn: a, rest: []byte("xy")}
	go b.Write([]byte("z"))
	got := make([]byte, 8)
	n, _ := uc.Read(got)
	m, _ := uc.Read(got[n:])
	if string(got[:n+m]) != "xyz" || n != 2 {
		t.Fatalf("read %q (%d first), want xy then z", got[:n+m], n)
	}

	uc.Cork()
	for _, p := range []string{"one ", "two ", "three"} {
		if _, err := uc.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- uc.Uncork(5 * time.Second) }()
	buf := make([]byte, 64)
	n, err := b.Read(buf) // net.Pipe: one Read per Write
	if err != nil || string(buf[:n]) != "one two three" {
		t.Fatalf("peer read %q, %v; want the corked writes as one", buf[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go uc.Write([]byte("after"))
	if n, err := io.ReadFull(b, buf[:5]); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("uncorked write: %q, %v", buf[:n], err)
	}
}
