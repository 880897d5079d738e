package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestE2ENoListenerWaitsThenRecovers(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	const sendTimeout = time.Second
	e.startGateway(func(c *config.Gateway) { c.SendTimeout = sendTimeout })
	// No listener: the pool cannot connect; a send waits for one for the
	// send timeout, then gets 503 no_listener.
	testlog.WaitFor(t, "readyz to report no listener", func() bool {
		resp, b := e.do("GET", "/readyz", "", nil)
		return resp.StatusCode == 503 && strings.Contains(string(b), "no listener")
	})
	start := time.Now()
	resp, b := e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 503 || problemCode(b) != "no_listener" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("without listener: %d %s", resp.StatusCode, b)
	}
	// It waited for a listener (at least about the send timeout), and did
	// not hang (the upper bound only catches that, loosely: no timing flake).
	if d := time.Since(start); d < sendTimeout/2 || d > 15*sendTimeout {
		t.Errorf("503 took %v; want about the send timeout (%v)", d, sendTimeout)
	}
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("x"))
	if resp.StatusCode != 503 || problemCode(b) != "no_listener" {
		t.Fatalf("request mode without listener: %d %s", resp.StatusCode, b)
	}

	stop := e.startListener(nil)
	e.waitReady()
	if resp, b := e.do("POST", "/messages", "text/plain", []byte("after")); resp.StatusCode != 202 {
		t.Fatalf("after the listener came: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "after" {
		t.Fatalf("got %q", f.data)
	}

	// The only listener leaves: a send waits for the send timeout, then
	// 503; no gateway restart is needed once it is back.
	stop()
	testlog.WaitFor(t, "the pool to notice the listener left", func() bool {
		ok, _ := e.gw.pool.Ready()
		return !ok
	})
	resp, b = e.do("POST", "/messages", "text/plain", []byte("x"))
	if resp.StatusCode != 503 {
		t.Fatalf("listener gone: %d %s", resp.StatusCode, b)
	}
	e.startListener(nil)
	e.waitReady()
	if resp, b := e.do("POST", "/messages", "text/plain", []byte("back")); resp.StatusCode != 202 {
		t.Fatalf("after the listener restarted: %d %s", resp.StatusCode, b)
	}
	if f := e.next(); string(f.data) != "back" {
		t.Fatalf("got %q", f.data)
	}
}

func TestE2EPoolRecoversAfterDroppedConnections(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(nil)
	e.waitReady()
	e.emu.DropConnections()
	// Meanwhile every answer is fast, 202 or 503, until messages arrive
	// again (one written into a connection that was already dead may be
	// lost: that is what "sent" does not promise).
	n, statuses := 0, map[int]int{}
	testlog.WaitFor(t, "a message to arrive after the drop", func() bool {
		n++
		start := time.Now()
		resp, b := e.do("POST", "/messages", "text/plain", []byte(fmt.Sprintf("after-drop-%d", n)))
		// Answered within the send timeout (2 s), not hung: the bound is
		// loose so a loaded machine cannot fail it.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("answer took %v", d)
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode != 202 && resp.StatusCode != 503 {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		for {
			select {
			case f := <-e.recv:
				if strings.HasPrefix(string(f.data), "after-drop-") {
					return true
				}
			default:
				return false
			}
		}
	})
	t.Logf("statuses while recovering: %v", statuses)
	if ok, why := e.gw.pool.Ready(); !ok {
		t.Errorf("pool not ready after recovery: %s", why)
	}
}

// TestE2EOverloaded fills the only pooled connection (its listener does not
// read, so the relay's and the sockets' buffers fill up, the writer blocks
// and the queue fills) until the pool refuses: 503 overloaded with
// Retry-After, at once.
func TestE2EOverloaded(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			select { // read nothing until released
			case <-release:
			case <-ctx.Done():
				return
			}
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		},
		ReadLimit: 2 << 20,
	}, e.log.With("component", "stalled-listener"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	t.Cleanup(func() { unblock(); l.Close(); <-done })
	e.startGateway(func(c *config.Gateway) {
		c.PoolSize, c.QueueSize = 1, 1
		c.SendTimeout, c.WriteTimeout, c.PingInterval = 30*time.Second, 30*time.Second, time.Minute
	})
	e.waitReady()

	// Many 1 MiB messages at once: a few fill the sockets' buffers, one
	// blocks the writer, one waits in the queue, and the rest must be
	// refused at once rather than wait for the 30s send timeout.
	body := make([]byte, 1<<20)
	contract := apitest.Load(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	checked := false
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A plain client: validating 40 MiB against the contract only
			// adds CPU contention; one 503 is validated below.
			start := time.Now()
			req, _ := http.NewRequest("POST", e.base+"/messages", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("post: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			statuses[fmt.Sprintf("%d %s", resp.StatusCode, problemCode(b))]++
			switch {
			case resp.StatusCode == 202:
			case resp.StatusCode == 503 && problemCode(b) == "overloaded":
				if resp.Header.Get("Retry-After") != "1" {
					t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
				if d > 10*time.Second {
					t.Errorf("overloaded answer took %v", d)
				}
				if !checked {
					checked = true
					contract.Check(t, req, body, resp.StatusCode, resp.Header, b)
				}
			default:
				t.Errorf("got %d %s", resp.StatusCode, b)
			}
		}()
	}
	testlog.WaitFor(t, "a 503 overloaded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return statuses["503 overloaded"] > 0
	})
	unblock()
	wg.Wait()
	t.Logf("statuses of the 1 MiB posts: %v", statuses)
}
