package relay

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/testlog"
)

// TestHandlerGoroutines checks that a finished handler goroutine serves
// the next command, that at most maxIdleHandlers wait, that they exit
// after handlerIdle or when Run returns, and that waiting for handlers
// waits for them.
func TestHandlerGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := NewListener(ListenerConfig{Credentials: Credentials{Host: "ns.example", EntityPath: "hc", KeyName: "k", Key: "s"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		goroutines := func(want int, when string) {
			t.Helper()
			synctest.Wait()
			if got := handlerGoroutines(); got != want {
				t.Errorf("%s: got %d handler goroutines, want %d", when, got, want)
			}
		}

		// busy runs n commands that block until the returned func is called.
		busy := func(n int) (release func()) {
			ch := make(chan struct{})
			for range n {
				l.spawn(func() { <-ch })
			}
			return func() { close(ch) }
		}

		l.spawn(func() {})
		goroutines(1, "after a command")
		release := busy(1)
		goroutines(1, "the idle goroutine took the next command")
		release()
		goroutines(1, "idle again")

		release = busy(2 * maxIdleHandlers)
		goroutines(2*maxIdleHandlers, "while busy")
		release()
		goroutines(maxIdleHandlers, "once idle")
		if got := l.idle.Load(); got != maxIdleHandlers {
			t.Errorf("got %d idle, want %d", got, maxIdleHandlers)
		}

		time.Sleep(handlerIdle)
		goroutines(0, "after handlerIdle")

		busy(3)()
		goroutines(3, "idle after 3 commands")
		close(l.stopped) // as Run does when it returns
		l.handlers.Wait()
		goroutines(0, "after Run")
	})
}

// handlerGoroutines counts the goroutines running Listener.handle.
func handlerGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte(".(*Listener).handle("))
}

// writeCounter counts the writes that reach a connection.
type writeCounter struct {
	net.Conn
	n atomic.Int64
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestSessionWriterWaitsForRunnableHandlers checks that the control
// channel's writer, woken by one response, lets the handlers that are
// already runnable queue theirs before it writes, so that they share one
// write. With one P the order is fixed: the last handler started runs
// first and wakes the writer, the others are queued behind it. A round
// in which the scheduler picks the writer early writes twice, so the test
// asks for most rounds, not all; without the yield every round writes
// each response alone.
func TestSessionWriterWaitsForRunnableHandlers(t *testing.T) {
	const rounds, handlers = 20, 8
	got := make(chan struct{}, rounds*handlers)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
			got <- struct{}{}
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var raw *upgradedConn
	var wc *writeCounter
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
		HTTPClient: upgradeClientFunc(nil, func(c *upgradedConn) {
			raw, wc = c, &writeCounter{Conn: c.Conn}
			c.Conn = wc
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if raw == nil {
		t.Fatal("no upgraded connection to cork")
	}
	s := &session{ws: ws, raw: raw, ctx: ctx, sendq: make(chan *outCmd, sendQueue)}
	done := make(chan struct{})
	go func() { defer close(done); s.writeLoop() }()
	defer func() { cancel(); <-done }()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	shared := 0
	for range rounds {
		before := wc.n.Load()
		for i := range handlers {
			go s.post(&outCmd{msg: []byte(`{"response":{"requestId":"` + strconv.Itoa(i) + `"}}`)})
		}
		for range handlers {
			select {
			case <-got:
			case <-time.After(testlog.Timeout):
				t.Fatal("the responses did not arrive")
			}
		}
		if wc.n.Load()-before == 1 {
			shared++
		}
	}
	if shared < rounds*3/4 {
		t.Errorf("%d handlers' responses shared one write in %d of %d rounds, want most", handlers, shared, rounds)
	}
}
