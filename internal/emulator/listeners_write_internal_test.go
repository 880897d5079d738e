package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

// pipeChannel is a controlChannel whose WebSocket is the server end of a
// loopback connection (through corkListener, as the emulator serves it),
// and the client end, which plays the listener.
func pipeChannel(t *testing.T) (*controlChannel, *websocket.Conn) {
	t.Helper()
	up := websocket.Upgrader{}
	wsCh := make(chan *websocket.Conn, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		wsCh <- ws
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = corkListener{ln}
	srv.Start()
	t.Cleanup(srv.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ws := <-wsCh
	t.Cleanup(func() { ws.Close() })
	if corkOf(ws.NetConn()) == nil {
		t.Fatal("the server's connection is not corkable")
	}
	c := &controlChannel{ws: ws, ready: make(chan struct{})}
	close(c.ready)
	return c, client
}

// TestControlChannelPostKeepsBodiesAdjacent: commands posted concurrently
// all arrive, each followed at once by its body message, whichever
// goroutine wrote them.
func TestControlChannelPostKeepsBodiesAdjacent(t *testing.T) {
	c, client := pipeChannel(t)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint(i)
			m := &relay.ControlMessage{Request: &relay.RequestCommand{ID: id, Method: "POST", Body: relay.Bool(i%2 == 0), Address: "ws://x"}}
			var body []byte
			if i%2 == 0 {
				body = []byte("body " + id)
			}
			var err error
			if i%3 == 0 {
				err = c.send(context.Background(), m, body)
			} else {
				err = c.post(context.Background(), m, body, func(err error) { t.Errorf("write of %s failed: %v", id, err) })
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	seen := map[string]bool{}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(seen) < n {
		mt, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("after %d commands: %v", len(seen), err)
		}
		m, err := relay.DecodeControlMessage(data)
		if mt != websocket.TextMessage || err != nil || m.Request == nil {
			t.Fatalf("got %d %q (%v), want a request command", mt, data, err)
		}
		id := m.Request.ID
		if seen[id] {
			t.Fatalf("command %s twice", id)
		}
		seen[id] = true
		if m.Request.HasBody() {
			mt, data, err := client.ReadMessage()
			if err != nil || mt != websocket.BinaryMessage || string(data) != "body "+id {
				t.Fatalf("after command %s: %d %q %v, want its body", id, mt, data, err)
			}
		}
	}
	wg.Wait()
}

// TestControlChannelPostFailure: a write that fails calls the command's
// failed function (a request is then answered 502 by its sender's
// goroutine), send returns the error, and once broken the channel queues
// nothing more.
func TestControlChannelPostFailure(t *testing.T) {
	c, _ := pipeChannel(t)
	c.ws.NetConn().Close()
	m := &relay.ControlMessage{Request: &relay.RequestCommand{ID: "1", Address: "ws://x"}}
	failed := make(chan error, 1)
	if err := c.post(context.Background(), m, nil, func(err error) { failed <- err }); err != nil {
		t.Fatalf("post: %v, want the command queued", err)
	}
	if err := <-failed; err == nil {
		t.Fatal("failed called with nil")
	}
	if err := c.send(context.Background(), m, nil); err == nil {
		t.Fatal("send on a broken channel succeeded")
	}
	err := c.post(context.Background(), m, nil, func(error) { t.Error("failed called for a command that was not queued") })
	if err == nil {
		t.Fatal("post on a broken channel queued the command")
	}
}

// TestControlChannelPostWaitsForUpgrade: a command posted before the
// listener's upgrade completed gives up with its context.
func TestControlChannelPostWaitsForUpgrade(t *testing.T) {
	c := &controlChannel{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.post(ctx, &relay.ControlMessage{Request: &relay.RequestCommand{ID: "1", Address: "ws://x"}}, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("post = %v, want context.Canceled", err)
	}
}
