package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/gateway"
	"github.com/relaygate/relaygate/internal/relay"
)

// stack is the relay side of every scenario: one in-process emulator on
// 127.0.0.1:0. Each scenario gets its own hybrid connection (endpoint),
// with its own listener and counters, so late traffic of one scenario can
// never be counted in another.
type stack struct {
	emu *emulator.Server
	log *slog.Logger
	n   atomic.Int64 // endpoints created, for names
}

// startStack starts the emulator. log receives the emulator's and the
// listeners' logs (warnings and errors are worth seeing in a benchmark).
func startStack(log *slog.Logger) (*stack, error) {
	emu, err := emulator.New(emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      []emulator.Rule{emulator.DevRule()},
		AutoCreate: true,
	}, log.With("component", "emulator"), nil)
	if err != nil {
		return nil, err
	}
	if err := emu.Open(); err != nil {
		return nil, err
	}
	return &stack{emu: emu, log: log}, nil
}

func (s *stack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.emu.Close(ctx); err != nil {
		s.log.Warn("emulator close", "err", err)
	}
}

// sink counts what a receiver got: messages and payload bytes, and the
// connections currently open.
type sink struct {
	msgs  atomic.Int64
	bytes atomic.Int64
	open  atomic.Int64
}

func (k *sink) add(n int) {
	k.msgs.Add(1)
	k.bytes.Add(int64(n))
}

// waitFor polls cond every millisecond until it holds or d passes, and
// reports whether it held.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// endpoint is one hybrid connection with a relay.Listener that counts
// every message its accepted connections carry.
type endpoint struct {
	name  string
	creds relay.Credentials // Send rights, for senders
	sink  sink
	ln    *relay.Listener
	done  chan struct{}
}

// endpoint creates a fresh hybrid connection and connects a counting
// listener to it.
func (s *stack) endpoint(ctx context.Context) (*endpoint, error) {
	e := &endpoint{name: fmt.Sprintf("bench%d", s.n.Add(1)), done: make(chan struct{})}
	e.creds = s.emu.Credentials(e.name)
	ln, err := relay.NewListener(relay.ListenerConfig{
		Credentials: s.emu.ListenerCredentials(e.name),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			e.sink.open.Add(1)
			defer e.sink.open.Add(-1)
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				e.sink.add(len(data))
			}
		},
		// Request mode (?delivery=request): count the body as a message
		// and answer 202, as a listener that queues it would.
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			e.sink.add(int(n))
			w.WriteHeader(http.StatusAccepted)
		}),
		ReadLimit: 2 << 20,
	}, s.log.With("component", "listener", "entity", e.name))
	if err != nil {
		return nil, err
	}
	e.ln = ln
	go func() {
		defer close(e.done)
		if err := ln.Run(context.Background()); err != nil {
			s.log.Error("listener stopped", "err", err)
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ln.WaitConnected(wctx); err != nil {
		e.close()
		return nil, fmt.Errorf("listener %s: %w", e.name, err)
	}
	return e, nil
}

// close stops the listener and waits for its connection handlers.
func (e *endpoint) close() {
	e.ln.Close()
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
	}
}

// defaultPoolSize is config.Gateway's default pool size, which the
// reports name; defaultQueueSize its default queue size.
const (
	defaultPoolSize  = 4
	defaultQueueSize = 64
)

// benchGateway is an in-process gateway built by internal/gateway from
// config.Gateway's defaults, as cmd/gateway builds it: the api Server with
// Prometheus metrics and an info-level request log, over a relay.Pool,
// on 127.0.0.1:0. The log is formatted but discarded, so its cost is
// counted without a terminal.
type benchGateway struct {
	gw  *gateway.Gateway
	url string
}

// nopRelayer accepts every message without relaying it: the HTTP ceiling.
type nopRelayer struct{}

func (nopRelayer) Send(context.Context, relay.Message) error { return nil }

// ceilingCreds are placeholder credentials for the HTTP ceiling, which
// never reaches a relay.
var ceilingCreds = relay.Credentials{Host: "127.0.0.1:1", EntityPath: "none", KeyName: "none", Key: "none"}

// startGateway starts a gateway relaying to creds with poolSize
// connections and waits until every connection is ready. With ceiling set
// it relays nothing: the same router, middleware, decoding and response,
// with a Relayer that returns at once, and creds are not used.
func startGateway(ctx context.Context, creds relay.Credentials, poolSize int, ceiling bool) (*benchGateway, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := config.GatewayDefaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = "" // no admin listener: several gateways may run at once
	if ceiling {
		creds = ceilingCreds
	}
	cfg.Namespace, cfg.EntityPath, cfg.KeyName, cfg.Key, cfg.Emulator = creds.Host, creds.EntityPath, creds.KeyName, creds.Key, creds.Insecure
	var opts []gateway.Option
	if ceiling {
		opts = append(opts, gateway.WithRelayer(nopRelayer{}))
	} else {
		cfg.PoolSize = poolSize
	}
	gw, err := gateway.New(cfg, log, opts...)
	if err != nil {
		return nil, err
	}
	g := &benchGateway{gw: gw}
	if pool := gw.Pool(); pool != nil {
		if err := waitPool(ctx, pool); err != nil {
			g.close()
			return nil, err
		}
	}
	if err := gw.Start(ctx); err != nil {
		g.close()
		return nil, err
	}
	g.url = "http://" + gw.Addr()
	return g, nil
}

// waitPool waits until every connection of p is ready.
func waitPool(ctx context.Context, p *relay.Pool) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := p.WaitReady(wctx); err != nil {
		return fmt.Errorf("pool not ready: %w", err)
	}
	if !waitFor(ctx, 15*time.Second, func() bool { st := p.Stats(); return st.Ready == st.Size }) {
		return fmt.Errorf("pool: only %d of %d connections ready", p.Stats().Ready, p.Stats().Size)
	}
	return nil
}

func (g *benchGateway) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = g.gw.Shutdown(ctx)
}

// directServer is a plain WebSocket server on 127.0.0.1:0 that counts what
// it reads, with the same whole-message reads as the listener: the direct
// WebSocket, with no relay in between.
type directServer struct {
	sink sink
	srv  *http.Server
	url  string
}

func startDirect() (*directServer, error) {
	d := &directServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.srv = &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
			if err != nil {
				return
			}
			defer ws.CloseNow()
			ws.SetReadLimit(2 << 20)
			d.sink.open.Add(1)
			defer d.sink.open.Add(-1)
			for {
				_, data, err := ws.Read(r.Context())
				if err != nil {
					return
				}
				d.sink.add(len(data))
			}
		}),
	}
	d.srv.RegisterOnShutdown(cancel)
	go d.srv.Serve(ln)
	d.url = "ws://" + ln.Addr().String() + "/"
	return d, nil
}

func (d *directServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = d.srv.Close()
	}
}
