package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

const entity = "hc"

type frame struct {
	typ  relay.MessageType
	data []byte
}

// e2e is one gateway on 127.0.0.1:0 talking to an in-process emulator.
type e2e struct {
	t      *testing.T
	logs   *testlog.Buffer
	log    *slog.Logger
	emu    *emulator.Server
	gw     *Gateway
	base   string
	client *http.Client // every exchange validated against openapi.yaml
	recv   chan frame

	listenerClient *http.Client // the test listener's relay dials; nil: default
}

// testConfig is the gateway configuration of the tests: small pool, short
// timeouts, explicit credentials filled in by startE2E.
func testConfig() config.Gateway {
	return config.Gateway{
		Addr: "127.0.0.1:0", PoolSize: 2, QueueSize: 16, MaxBodyBytes: 1 << 20,
		SendTimeout: 2 * time.Second, DeliveryTimeout: 5 * time.Second, WriteTimeout: 2 * time.Second,
		DialTimeout: 2 * time.Second, PingInterval: 5 * time.Second, TokenTTL: time.Hour, TokenMaxTTL: 24 * time.Hour,
		RetryAfter: time.Second, ShutdownTimeout: 5 * time.Second, LogLevel: "debug", LogFormat: "text",
	}
}

// newE2E starts the emulator, with its config changed by opts.
func newE2E(t *testing.T, opts ...func(*emulator.Config)) *e2e {
	t.Helper()
	log, logs := testlog.New(t)
	e := &e2e{t: t, log: log, logs: logs, recv: make(chan frame, 8192)}
	e.emu = emulatortest.StartLogged(t, e.log.With("component", "emulator"), opts...)
	e.client = apitest.Load(t).Client(t)
	return e
}

// startGateway starts the gateway against the emulator with cfg modified by mod.
func (e *e2e) startGateway(mod func(*config.Gateway)) {
	e.t.Helper()
	cr := e.emu.Credentials(entity)
	cfg := testConfig()
	cfg.Namespace, cfg.EntityPath, cfg.KeyName, cfg.Key, cfg.Emulator = cr.Host, cr.EntityPath, cr.KeyName, cr.Key, true
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		e.t.Fatal(err)
	}
	gw, err := start(context.Background(), cfg, e.log.With("component", "gateway"), io.Discard)
	if err != nil {
		e.t.Fatal(err)
	}
	e.gw = gw
	e.base = "http://" + gw.Addr()
	e.t.Cleanup(func() { gw.shutdown() })
}

// startListener connects a listener that forwards every WebSocket message
// to e.recv and serves HTTP request mode with h. It returns a stop func.
func (e *e2e) startListener(h http.Handler) (stop func()) {
	e.t.Helper()
	return e.startListenerWith(h, nil)
}

// startListenerWith is startListener with the listener's config changed by
// mod (if not nil).
func (e *e2e) startListenerWith(h http.Handler, mod func(*relay.ListenerConfig)) (stop func()) {
	e.t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	}
	cfg := relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				e.recv <- frame{typ, data}
			}
		},
		HTTPHandler: h,
		HTTPClient:  e.listenerClient,
		ReadLimit:   2 << 20,
		Backoff:     []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := relay.NewListener(cfg, e.log.With("component", "test-listener"))
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); l.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		e.t.Fatalf("listener: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			<-done
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *e2e) waitReady() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.gw.pool.WaitReady(ctx); err != nil {
		e.t.Fatalf("pool not ready: %v", err)
	}
}

func (e *e2e) do(method, path, contentType string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *e2e) next() frame {
	e.t.Helper()
	select {
	case f := <-e.recv:
		return f
	case <-time.After(5 * time.Second):
		e.t.Fatal("listener received nothing")
	}
	return frame{}
}

func problemCode(b []byte) string {
	var p struct{ Code string }
	json.Unmarshal(b, &p)
	return p.Code
}

// start builds and starts a gateway as cmd/gateway does, printing the
// local-mode banner on out.
func start(ctx context.Context, cfg config.Gateway, log *slog.Logger, out io.Writer) (*Gateway, error) {
	g, err := New(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := g.Start(ctx); err != nil {
		return nil, errors.Join(err, g.shutdown())
	}
	g.Banner(out)
	return g, nil
}

// shutdown stops g within its configured grace period.
func (g *Gateway) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	return g.Shutdown(ctx)
}
