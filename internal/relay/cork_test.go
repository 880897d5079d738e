package relay_test

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// TestCorkConn checks that corked writes reach the peer as one write, in
// order, that writes go through once uncorked, and that Uncork bounds its
// write by the deadline it is given.
func TestCorkConn(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &relay.CorkConn{Conn: a}

	if err := c.Uncork(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("Uncork with nothing gathered: %v", err)
	}
	c.Cork()
	for _, p := range []string{"one ", "two ", "three"} {
		if n, err := c.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("corked Write = %d, %v; want %d, nil", n, err, len(p))
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Uncork(time.Now().Add(5 * time.Second)) }()
	buf := make([]byte, 64)
	n, err := b.Read(buf) // net.Pipe: one Read per Write
	if err != nil || string(buf[:n]) != "one two three" {
		t.Fatalf("peer read %q, %v; want the corked writes as one", buf[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	go c.Write([]byte("after"))
	if n, err := io.ReadFull(b, buf[:5]); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("uncorked write: %q, %v", buf[:n], err)
	}

	// Nobody reads b: the corked write ends at the deadline, and the
	// deadline does not outlive it.
	c.Cork()
	c.Write([]byte("stuck"))
	if err := c.Uncork(time.Now().Add(10 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Uncork to a peer that does not read = %v, want a deadline error", err)
	}
	go func() { errc <- func() error { _, err := c.Write([]byte("later")); return err }() }()
	if n, err := io.ReadFull(b, buf[:5]); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("write after a timed-out Uncork: %q, %v", buf[:n], err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write after a timed-out Uncork: %v (deadline left set)", err)
	}
}
