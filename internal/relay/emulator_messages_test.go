package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestEmulatorMessagesBothDirections(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	seen := make(chan *relay.ListenerConn, 1)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		seen <- c
		echo(ctx, c)
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{
		Suffix: "sub/path", Query: url.Values{"app": {"v 1"}}, Header: http.Header{"X-App": {"yes"}},
		Subprotocols: []string{"chat.v2", "chat.v1"},
	})
	c := <-seen
	if c.Path() != "/hc1/sub/path" || c.Query().Get("app") != "v 1" || c.Query().Has(relay.QueryAction) ||
		c.Header().Get("X-App") != "yes" || c.Header().Get(relay.HeaderAuthorization) != "" || c.Subprotocol() != "chat.v2" || c.ID() == "" {
		t.Errorf("listener saw path %q query %v header %v subprotocol %q", c.Path(), c.Query(), c.Header(), c.Subprotocol())
	}
	if ws.Subprotocol() != "chat.v2" {
		t.Errorf("sender subprotocol %q", ws.Subprotocol())
	}

	ctx := waitCtx(t)
	sizes := []int{1, 125, 126, 65535, 65536, 64<<10 + 1, 200 << 10, 1 << 20}
	type msg struct {
		typ  websocket.MessageType
		data []byte
	}
	var sent []msg
	for i, n := range sizes {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			sent = append(sent, msg{typ, payload(n, byte(i))})
		}
	}
	// Write everything first (from another goroutine, so that neither side
	// blocks on the other's buffers), then check order and content.
	errc := make(chan error, 1)
	go func() {
		for _, m := range sent {
			if err := ws.Write(ctx, m.typ, m.data); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, m := range sent {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Fatalf("message %d: got %v %d bytes, want %v %d bytes", i, typ, len(data), m.typ, len(m.data))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A normal close travels to the listener and back.
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestEmulatorListenerWritesFirst(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	big := payload(1<<20, 7)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		c.Write(ctx, relay.MessageText, []byte("hello"))
		c.Write(ctx, relay.MessageBinary, big)
		c.Read(ctx) // until the sender closes
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	ctx := waitCtx(t)
	if typ, data, err := ws.Read(ctx); err != nil || typ != websocket.MessageText || string(data) != "hello" {
		t.Fatalf("got %v %q %v", typ, data, err)
	}
	if typ, data, err := ws.Read(ctx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(data, big) {
		t.Fatalf("got %v %d bytes %v", typ, len(data), err)
	}
}

func TestEmulatorListenerCloseCodeReachesSender(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
		c.Close(4001, "done here")
	}})
	ws := dial(t, emu, "hc1", relay.DialOptions{})
	_, _, err := ws.Read(waitCtx(t))
	if websocket.CloseStatus(err) != 4001 {
		t.Fatalf("got %v, want close 4001", err)
	}
}

func TestEmulatorSendersSpreadOverListeners(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	const listeners, senders = 3, 30
	var counts [listeners]atomic.Int32
	for i := range listeners {
		runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			counts[i].Add(1)
			c.Write(ctx, relay.MessageText, []byte(fmt.Sprint(i)))
			c.Read(ctx)
		}})
	}
	for range senders {
		ws := dial(t, emu, "hc1", relay.DialOptions{})
		if _, _, err := ws.Read(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	}
	total := 0
	for i := range listeners {
		n := int(counts[i].Load())
		total += n
		if n == 0 {
			t.Errorf("listener %d got no sender", i)
		}
	}
	if total != senders {
		t.Errorf("listeners got %d senders, want %d", total, senders)
	}
}

func TestEmulatorTLS(t *testing.T) {
	t.Parallel()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	emu := emulatortest.Start(t, func(c *emulator.Config) { c.TLS = &emulator.TLSConfig{CAFile: caFile} })
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in the file")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if emu.Credentials("hc1").Insecure {
		t.Fatal("TLS emulator gave insecure credentials")
	}
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo, HTTPClient: client})
	ws := dial(t, emu, "hc1", relay.DialOptions{HTTPClient: client})
	ctx := waitCtx(t)
	ws.Write(ctx, websocket.MessageText, []byte("over tls"))
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "over tls" {
		t.Fatalf("echo: %q %v", data, err)
	}
	// Without the CA the handshake fails, and the error says why.
	_, err = relay.Dial(ctx, emu.Credentials("hc1"), relay.DialOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a certificate error", err)
	}
}

func TestEmulatorDialContextBoundsHandshakeOnly(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{ConnHandler: echo})
	dctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	ws, err := relay.Dial(dctx, emu.Credentials("hc1"), relay.DialOptions{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ctx := waitCtx(t)
	if err := ws.Write(ctx, websocket.MessageText, []byte("after cancel")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "after cancel" {
		t.Fatalf("echo after the dial ctx was cancelled: %q %v", data, err)
	}
}
