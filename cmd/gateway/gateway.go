package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/console"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/metrics"
	"github.com/relaygate/relaygate/internal/relay"
)

var (
	_ api.Relayer          = (*relay.Pool)(nil)
	_ api.ReadinessChecker = (*relay.Pool)(nil)
	_ api.HTTPDoer         = (*relay.HTTPSender)(nil)
	_ api.Metrics          = (*metrics.Gateway)(nil)
	_ relay.Metrics        = (*metrics.Gateway)(nil)
)

// localEntity is the hybrid connection local mode creates.
const localEntity = "relaygate"

// gateway is the running process: HTTP server, pool and, in local mode,
// the emulator and listener. Built by start, stopped by shutdown.
type gateway struct {
	cfg      config.Gateway
	log      *slog.Logger
	api      *api.Server
	srv      *http.Server
	ln       net.Listener
	pool     *relay.Pool
	metrics  *metrics.Gateway
	creds    relay.Credentials
	serveErr chan error

	// Local mode only.
	emu      *emulator.Server
	listener *relay.Listener
	lnDone   chan struct{}
	feed     *console.Feed // what the listener receives, for the browser console
}

// Addr is the HTTP listen address.
func (g *gateway) Addr() string { return g.ln.Addr().String() }

// start builds every part, binds cfg.Addr and serves in the background. In
// local mode it also starts the emulator and the listener and prints the
// banner on out. The returned gateway must be stopped with shutdown.
func start(ctx context.Context, cfg config.Gateway, log *slog.Logger, out io.Writer) (*gateway, error) {
	g := &gateway{cfg: cfg, log: log, serveErr: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			g.closeRelay(context.Background())
		}
	}()
	if cfg.Local() {
		if err := g.startLocal(); err != nil {
			return nil, err
		}
	} else {
		creds, err := cfg.Credentials()
		if err != nil {
			return nil, err
		}
		g.creds = creds
	}

	m := metrics.New()
	g.metrics = m
	pool, err := relay.NewPool(relay.PoolConfig{
		Credentials:     g.creds,
		Size:            cfg.PoolSize,
		QueueSize:       cfg.QueueSize,
		WriteTimeout:    cfg.WriteTimeout,
		DialTimeout:     cfg.DialTimeout,
		PingInterval:    cfg.PingInterval,
		TokenTTL:        cfg.TokenTTL,
		RenewBefore:     min(5*time.Minute, cfg.TokenTTL/2),
		MaxMessageBytes: cfg.MaxBodyBytes + 64<<10, // the JSON envelope adds at most a few hundred bytes
	}, log.With("component", "pool"), m)
	if err != nil {
		return nil, err
	}
	g.pool = pool

	g.api = api.New(api.Config{
		Credentials:     g.creds,
		MaxBodyBytes:    cfg.MaxBodyBytes,
		SendTimeout:     cfg.SendTimeout,
		DeliveryTimeout: cfg.DeliveryTimeout,
		RetryAfter:      cfg.RetryAfter,
		TokenMaxTTL:     cfg.TokenMaxTTL,
		APIKeys:         cfg.APIKeys,
		CORSOrigins:     cfg.CORSOrigins,
		ListenAddr:      cfg.Addr,
		MetricsHandler:  m.Handler(),
		Console:         g.consoleHandlers(),
	}, pool, &api.RelayRequester{
		Doer:         &relay.HTTPSender{Credentials: g.creds, TokenTTL: cfg.TokenTTL},
		MaxBodyBytes: cfg.MaxBodyBytes,
	}, log.With("component", "api"), m)
	g.srv = g.api.HTTPServer(g.api.Handler())
	// Shutdown does not interrupt handlers: end the console's streams, and
	// do not wait 5 s for browsers' unused preconnected sockets.
	g.srv.RegisterOnShutdown(g.feed.Close)
	trackNewConns(g.srv, unusedConnGrace)

	// Listen synchronously so "address in use" is an error here.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	g.ln = ln
	go func() {
		if err := g.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			g.serveErr <- err
		}
	}()
	ok = true

	if g.emu != nil {
		// Give the banner a ready pool; if the first dials are slow the
		// gateway still serves (503 until ready).
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := pool.WaitReady(wctx); err != nil {
			log.Warn("pool not ready yet", "err", err)
		}
		cancel()
		g.banner(out)
	}
	log.Info("gateway listening", "addr", g.Addr(), "relay", g.creds, "local_mode", g.emu != nil,
		"pool_size", cfg.PoolSize, "api_keys", len(cfg.APIKeys))
	return g, nil
}

// startLocal starts the in-process emulator on a random loopback port and
// a listener that logs what it receives.
func (g *gateway) startLocal() error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	emu, err := emulator.New(emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      []emulator.Rule{{Name: "RootManageSharedAccessKey", Key: base64.StdEncoding.EncodeToString(key), Rights: emulator.RightManage}},
		AutoCreate: true,
	}, g.log.With("component", "emulator"), nil)
	if err != nil {
		return err
	}
	if err := emu.Open(); err != nil {
		return err
	}
	g.emu = emu
	g.creds = emu.Credentials(localEntity)
	g.feed = console.NewFeed(console.FeedConfig{}, g.log.With("component", "console"))
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials(localEntity),
		ConnHandler: logMessages(g.log.With("component", "listener"), g.feed),
		HTTPHandler: echoRequests(g.log.With("component", "listener"), g.cfg.MaxBodyBytes, g.feed),
		ReadLimit:   g.cfg.MaxBodyBytes + 64<<10,
	}, g.log.With("component", "listener"))
	if err != nil {
		return err
	}
	g.listener = l
	g.lnDone = make(chan struct{})
	go func() {
		defer close(g.lnDone)
		if err := l.Run(context.Background()); err != nil {
			g.log.Error("local listener stopped", "err", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.WaitConnected(ctx)
}

// banner tells a person what local mode is and how to try it.
func (g *gateway) banner(out io.Writer) {
	base := "http://" + g.Addr()
	auth := ""
	if len(g.cfg.APIKeys) > 0 {
		auth = ` -H "Authorization: Bearer $GATEWAY_API_KEY"`
	}
	fmt.Fprintf(out, `
relaygate gateway: LOCAL MODE (no relay credentials configured)
  An in-process relay emulator runs on %s with hybrid connection %q,
  and a built-in listener logs every message it receives.
  Gateway:   %s   (API: %s/openapi.yaml)
  Console:   %s/   (open it in a browser)
  Try it:
    curl -i%s -H 'Content-Type: application/json' -d '{"message":"hello"}' %s/messages
  To use Azure Relay, set GATEWAY_CONNECTION_STRING (gateway -h lists every variable).

`, g.emu.Addr(), localEntity, base, base, base, auth, base)
}

// shutdown drains: readyz goes 503 and new requests are refused, in-flight
// requests finish, then the pool (and local emulator and listener) close,
// all within cfg.ShutdownTimeout.
func (g *gateway) shutdown() error {
	g.api.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.log.Warn("in-flight requests did not finish in time", "err", err)
		_ = g.srv.Close()
	}
	if cerr := g.closeRelay(ctx); cerr != nil && err == nil {
		err = cerr
	}
	g.log.Info("stopped")
	return err
}

// closeRelay closes the pool and, in local mode, the listener and emulator.
func (g *gateway) closeRelay(ctx context.Context) error {
	var errs []error
	if g.pool != nil {
		errs = append(errs, g.pool.Close(ctx))
	}
	if g.listener != nil {
		_ = g.listener.Close()
		select {
		case <-g.lnDone:
		case <-ctx.Done():
		}
	}
	if g.emu != nil {
		errs = append(errs, g.emu.Close(ctx))
	}
	return errors.Join(errs...)
}
