package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestE2EDrainUnderLoad shuts the gateway down while clients keep posting
// over keep-alive connections: /readyz goes 503 at once, requests are
// still accepted during the drain delay, every request the server took is
// answered (202, or 503 draining), every 202's message reaches the
// listener, and nothing else fails.
func TestE2EDrainUnderLoad(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.PoolSize = 4; c.DrainDelay = 500 * time.Millisecond })
	e.waitReady()

	plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var (
		mu        sync.Mutex
		accepted  = map[string]bool{}
		responses int
		refused   int
	)
	progress := make(chan struct{}, 10000)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				body := fmt.Sprintf("w%d-%d", w, i)
				resp, err := plain.Post(e.base+"/messages", "text/plain", strings.NewReader(body))
				if err != nil {
					// Refused, reset or EOF: the connection sat in the kernel's
					// backlog when the listening socket closed, so the server
					// never read the request. handledMessages below proves
					// that every request the server did read was answered.
					if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
						mu.Lock()
						refused++
						mu.Unlock()
						return // the server is gone: not accepted
					}
					t.Errorf("request %s: %v", body, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				responses++
				switch {
				case resp.StatusCode == 202:
					accepted[body] = true
				case resp.StatusCode == 503 && problemCode(b) == "draining":
				default:
					t.Errorf("request %s: %d %s", body, resp.StatusCode, b)
				}
				mu.Unlock()
				progress <- struct{}{}
			}
		}()
	}
	for range 100 {
		<-progress
	}
	drained := make(chan struct{})
	go func() { e.gw.Drain(t.Context()); close(drained) }()
	// Drain turns /readyz to 503 first of all, but on its own goroutine:
	// wait for it (api's health test checks it is immediate).
	testlog.WaitFor(t, "readyz 503 once draining", func() bool {
		r, err := plain.Get(e.base + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 503
	})
	before := len(progress)
	<-drained
	if len(progress) == before {
		t.Error("no request was served during the drain delay")
	}
	if err := e.gw.shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d responses, %d accepted, %d refused after shutdown", responses, len(accepted), refused)
	// Every request the server handled was answered to its client.
	if handled := e.handledMessages(); handled != responses {
		t.Errorf("server handled %d POST /messages, clients got %d responses", handled, responses)
	}
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(accepted) {
		select {
		case f := <-e.recv:
			got[string(f.data)] = true
		case <-deadline:
			for id := range accepted {
				if !got[id] {
					t.Errorf("accepted %s never reached the listener", id)
				}
			}
			return
		}
	}
}

// handledMessages sums relaygate_http_requests_total for POST /messages.
func (e *e2e) handledMessages() int {
	mfs, err := e.gw.metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "relaygate_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			route := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					route = l.GetValue()
				}
			}
			if route == "/messages" {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}
