package relay

import (
	"bytes"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
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
