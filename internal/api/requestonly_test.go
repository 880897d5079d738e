package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/relay"
)

// fakeProber is a function-field Prober counting its calls.
type fakeProber struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (p *fakeProber) Probe(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return p.err
}

func (p *fakeProber) set(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *fakeProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// TestRequestOnlyReadiness walks readiness through probes and requests on
// a fake clock: unknown at first, a probe when stale (sooner while not
// ready), and every request's outcome counts.
func TestRequestOnlyReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakeProber{err: fmt.Errorf("%w: the relay answered 404", relay.ErrNoListener)}
		var reqErr error
		rq := &fakeRequester{RequestFn: func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
			if reqErr != nil {
				return nil, reqErr
			}
			return &api.ListenerResponse{Status: 200}, nil
		}}
		ro := api.NewRequestOnly(rq, p, nil, nil)
		defer ro.Close()

		ready := func() (bool, string) {
			t.Helper()
			ok, why := ro.Ready()
			synctest.Wait() // let a probe it started finish
			return ok, why
		}
		if ok, why := ready(); ok || why != "request mode: checking the listener" {
			t.Fatalf("at start: %v %q", ok, why)
		}
		if ok, why := ready(); ok || why != "request mode: no listener connected" || p.count() != 1 {
			t.Fatalf("after a 404 probe: %v %q, %d probes", ok, why, p.count())
		}
		// Not ready: probes again after RetryProbeInterval, not before.
		p.set(nil)
		time.Sleep(api.RetryProbeInterval / 2)
		if ready(); p.count() != 1 {
			t.Fatalf("probed again within RetryProbeInterval: %d", p.count())
		}
		time.Sleep(api.RetryProbeInterval / 2)
		ready()
		if ok, why := ready(); !ok || p.count() != 2 {
			t.Fatalf("after a good probe: %v %q, %d probes", ok, why, p.count())
		}
		// Ready: requests keep it fresh, so no probe within ProbeInterval.
		for range 3 {
			time.Sleep(api.ProbeInterval / 2)
			if _, err := ro.Request(t.Context(), api.ListenerRequest{}); err != nil {
				t.Fatal(err)
			}
			if ok, _ := ready(); !ok || p.count() != 2 {
				t.Fatalf("ready with fresh requests: %v, %d probes", ok, p.count())
			}
		}
		// A request the relay refuses makes it not ready at once.
		reqErr = fmt.Errorf("%w: the relay answered 401", relay.ErrUnauthorized)
		ro.Request(t.Context(), api.ListenerRequest{})
		if ok, why := ro.Ready(); ok || why != "request mode: relay refused credentials" {
			t.Fatalf("after a 401: %v %q", ok, why)
		}
		synctest.Wait()
		// A request its client gave up on says nothing about the relay.
		reqErr = context.Canceled
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		time.Sleep(api.RetryProbeInterval) // the stale probe (good) makes it ready again
		ready()
		ro.Request(ctx, api.ListenerRequest{})
		if ok, why := ro.Ready(); !ok {
			t.Fatalf("a cancelled request changed readiness: %q", why)
		}
		synctest.Wait()
	})
}

// TestRequestOnlyWaitReady returns once a probe succeeds.
func TestRequestOnlyWaitReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakeProber{err: relay.ErrTimeout}
		ro := api.NewRequestOnly(&fakeRequester{}, p, nil, nil)
		defer ro.Close()
		go func() {
			time.Sleep(3 * api.RetryProbeInterval)
			p.set(nil)
		}()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := ro.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if n := p.count(); n < 4 {
			t.Fatalf("%d probes, want one per RetryProbeInterval", n)
		}
	})
}

// TestRequestOnlyHandler: on a request-only api every POST /messages goes
// through the Requester, and ?delivery=send is a 400 naming the reason.
func TestRequestOnlyHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *api.Config) { c.RequestOnly = true })
	var got []api.ListenerRequest
	e.rq.RequestFn = func(ctx context.Context, req api.ListenerRequest) (*api.ListenerResponse, error) {
		got = append(got, req)
		return &api.ListenerResponse{Status: 202, Header: http.Header{}, Body: []byte("ok")}, nil
	}
	e.rl.SendFn = func(ctx context.Context, m relay.Message) error {
		t.Error("Send called on a request-only api")
		return nil
	}
	for _, target := range []string{"/messages", "/messages?delivery=request"} {
		resp := e.do("POST", target, "text/plain", []byte("hi"))
		if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"delivered"`) {
			t.Fatalf("POST %s: %d %s", target, resp.StatusCode, b)
		}
	}
	if len(got) != 2 || string(got[0].Body) != "hi" {
		t.Fatalf("requester got %+v", got)
	}
	resp := e.do("POST", "/messages?delivery=send", "text/plain", []byte("hi"))
	if p := decodeProblem(t, resp); resp.StatusCode != 400 || p.Code != "invalid_argument" ||
		len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Detail, "request mode only") {
		t.Fatalf("delivery=send: %d %+v", resp.StatusCode, p)
	}
}

// TestRelayRequesterProbe: a probe is OPTIONS with the probe header and a
// small body; a listener's answer (Via) is reachable whatever its status,
// the relay's own 502 is "no listener".
func TestRelayRequesterProbe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		via     string
		status  int
		wantErr error
	}{
		{"listener 405", "1.1 ns", 405, nil},
		{"relay 502", "", 502, relay.ErrNoListener},
		{"relay 401", "", 401, relay.ErrUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := &api.RelayRequester{Doer: doerFunc(func(ctx context.Context, method, suffix string, query url.Values, header http.Header, body io.Reader) (*http.Response, error) {
				b, _ := io.ReadAll(body)
				if method != http.MethodOptions || header.Get(api.HeaderProbe) == "" || len(b) == 0 {
					t.Errorf("probe: %s %v %q", method, header, b)
				}
				if tt.via == "" { // the relay answered itself: relay.HTTPSender.Send's typed error
					return nil, &relay.StatusError{StatusCode: tt.status, Action: relay.ActionRequest}
				}
				h := http.Header{"Via": {tt.via}}
				return &http.Response{StatusCode: tt.status, Header: h, Body: io.NopCloser(strings.NewReader(""))}, nil
			})}
			if err := q.Probe(t.Context()); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
