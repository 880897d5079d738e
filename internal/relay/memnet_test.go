package relay_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
)

// memHost is the host name of every server on a memNet; the network
// ignores addresses.
const memHost = "relay.test"

// memNet is an in-memory network (net.Pipe) for tests inside a
// testing/synctest bubble, where real sockets do not work. It serves one
// http.Server; every dial reaches it, whatever the address.
type memNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// serveMem serves h on a fresh memNet until the test ends and returns a
// client that dials it. Call it inside the bubble.
func serveMem(t *testing.T, h http.Handler) *http.Client {
	t.Helper()
	n := &memNet{conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: h}
	go srv.Serve(n)
	tr := &http.Transport{DialContext: n.dial, DisableKeepAlives: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return &http.Client{Transport: tr}
}

// serveMemEmulator runs an emulator (as emulatortest.Start does, without
// a socket) on a memNet and returns it with a client that reaches it.
// Credentials from it need Host = memHost.
func serveMemEmulator(t *testing.T, opts ...func(*emulator.Config)) (*emulator.Server, *http.Client) {
	t.Helper()
	cfg := emulator.Config{
		Rules:      []emulator.Rule{{Name: emulatortest.KeyName, Key: emulatortest.RandomKey(), Rights: emulator.RightManage}},
		AutoCreate: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := testLogger(t, "emulator")
	emu, err := emulator.New(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := serveMem(t, emu.Handler())
	t.Cleanup(func() { emu.Close(context.Background()) })
	return emu, client
}

func (n *memNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case n.conns <- s:
		return c, nil
	case <-n.done:
		return nil, syscall.ECONNREFUSED
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *memNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

func (n *memNet) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *memNet) Addr() net.Addr { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return memHost + ":80" }
