package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/connlimit"
	"github.com/relaygate/relaygate/internal/console"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/metrics"
	"github.com/relaygate/relaygate/internal/relay"
	"go.opentelemetry.io/otel/trace"
)

var (
	_ api.Relayer          = (*relay.Pool)(nil)
	_ api.ReadinessChecker = (*relay.Pool)(nil)
	_ api.HTTPDoer         = (*relay.HTTPSender)(nil)
	_ api.Metrics          = (*metrics.Gateway)(nil)
	_ relay.Metrics        = (*metrics.Gateway)(nil)
)

// LocalEntity is the hybrid connection local mode creates.
const LocalEntity = "relaygate"

// Gateway is the running gateway: HTTP server, pool and, in local mode,
// the emulator and listener. Built by New, served by Start, stopped by
// Shutdown (cmd/gateway waits for a signal or Err in between).
type Gateway struct {
	// Static after New.
	cfg            config.Gateway
	log            *slog.Logger
	api            *api.Server
	srv            *http.Server
	pool           *relay.Pool      // nil with WithRelayer or in request-only mode
	reqOnly        *api.RequestOnly // GATEWAY_MODE=request only
	relayer        api.Relayer
	metrics        *metrics.Gateway
	creds          relay.Credentials
	client         *http.Client         // relay dials; nil: the relay package's default
	tracerProvider trace.TracerProvider // WithTracerProvider; nil: no spans
	serveErr       chan error

	// Local mode only, static after New.
	emu      *emulator.Server
	listener *relay.Listener
	lnDone   chan struct{}
	feed     *console.Feed // what the listener receives, for the browser console

	// Set by Start.
	ln    *connlimit.Listener
	admin *admin // nil without GATEWAY_ADMIN_ADDR
}

// Option changes how New assembles the gateway.
type Option func(*Gateway)

// WithRelayer replaces the relay pool by r: the gateway then serves the
// same router, middleware and decoding but hands every message to r. The
// benchmark's HTTP ceiling uses it with a Relayer that returns at once.
func WithRelayer(r api.Relayer) Option {
	return func(g *Gateway) { g.relayer = r }
}

// New builds every part of the gateway from cfg: in local mode (no
// credentials) it starts the in-process emulator and the logging
// listener first; then the pool (which starts dialing), the metrics and
// the API. It does not bind cfg.Addr: Start does. A gateway New returned
// must be stopped with Shutdown.
func New(cfg config.Gateway, log *slog.Logger, opts ...Option) (_ *Gateway, err error) {
	g := &Gateway{cfg: cfg, log: log, serveErr: make(chan error, 1)}
	for _, o := range opts {
		o(g)
	}
	defer func() {
		if err != nil {
			g.closeRelay(context.Background())
		}
	}()
	if cfg.Local() {
		if err := g.startLocal(); err != nil {
			return nil, err
		}
	} else if g.creds, err = cfg.Credentials(); err != nil {
		return nil, err
	}
	if g.client, err = cfg.RelayHTTPClient(); err != nil {
		return nil, err
	}
	g.metrics = metrics.New()
	requester := &api.RelayRequester{
		Doer: &relay.HTTPSender{Credentials: g.creds, TokenTTL: cfg.TokenTTL, Client: requestClient(g.client),
			TokenPlacement: relay.TokenPlacement(cfg.TokenPlacement)},
		MaxBodyBytes: cfg.MaxBodyBytes,
	}
	switch {
	case g.relayer != nil:
	case cfg.Mode == config.GatewayModeRequest:
		g.relayer = g.startRequestOnly(requester) // no sender WebSockets: see requestmode.go
	default:
		if g.pool, err = g.newPool(); err != nil {
			return nil, err
		}
		g.relayer = g.pool
	}
	g.api = api.New(api.Config{
		Credentials:         g.creds,
		MaxBodyBytes:        cfg.MaxBodyBytes,
		MaxBatch:            cfg.MaxBatch,
		SendTimeout:         cfg.SendTimeout,
		DeliveryTimeout:     cfg.DeliveryTimeout,
		RetryAfter:          cfg.RetryAfter,
		TokenMaxTTL:         cfg.TokenMaxTTL,
		APIKeys:             cfg.APIKeys,
		CORSOrigins:         cfg.CORSOrigins,
		ListenAddr:          cfg.Addr,
		AllowedHosts:        cfg.AllowedHosts,
		Console:             g.consoleHandlers(),
		RequestOnly:         g.reqOnly != nil,
		TracerProvider:      g.tracerProvider,
		EnvelopeTraceparent: cfg.EnvelopeTraceparent,
		MaxInflightBytes:    cfg.MaxInflightBytes,
		MaxWait:             cfg.MaxWait,
	}, g.relayer, g.requester(requester), log.With("component", "api"), g.metrics)
	g.srv = g.api.HTTPServer(g.api.Handler())
	// Shutdown does not interrupt handlers: end the console's streams, and
	// do not wait 5 s for browsers' unused preconnected sockets.
	g.srv.RegisterOnShutdown(g.feed.Close)
	trackNewConns(g.srv, unusedConnGrace)
	return g, nil
}

// newPool builds the sender pool from the configuration.
func (g *Gateway) newPool() (*relay.Pool, error) {
	cfg := g.cfg
	return relay.NewPool(relay.PoolConfig{
		Credentials:     g.creds,
		Size:            cfg.PoolSize,
		QueueSize:       cfg.QueueSize,
		WriteTimeout:    cfg.WriteTimeout,
		DialTimeout:     cfg.DialTimeout,
		PingInterval:    cfg.PingInterval,
		TokenTTL:        cfg.TokenTTL,
		RenewBefore:     min(5*time.Minute, cfg.TokenTTL/2),
		MaxMessageBytes: cfg.MaxBodyBytes + 64<<10, // the JSON envelope adds at most a few hundred bytes
		StallCloseAfter: cfg.StallCloseAfter,
		MaxUnsentBytes:  cfg.MaxUnsentBytes,
		MaxQueuedBytes:  cfg.MaxQueuedBytes,
		MaxQueueWait:    cfg.MaxQueueWait,
		MaxConnAge:      cfg.MaxConnAge,
		RetryWait:       cfg.SendTimeout, // a request waits for a listener as long as it may
		HTTPClient:      g.client,
		TokenPlacement:  relay.TokenPlacement(cfg.TokenPlacement),
	}, g.log.With("component", "pool"), g.metrics)
}

// requestClient is dial's TLS settings with keep-alives, for HTTP request
// mode; nil stays nil (http.DefaultClient).
func requestClient(dial *http.Client) *http.Client {
	if dial == nil {
		return nil
	}
	tr := dial.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = false
	tr.MaxIdleConnsPerHost = relay.DefaultSenderIdleConns // net/http keeps 2: most requests would dial
	return &http.Client{Transport: tr}
}

// Start binds cfg.Addr and cfg.AdminAddr synchronously (so "address in
// use" is its error) and serves both in the background; Err reports a
// failure of the API server. The API listener holds at most cfg.MaxConns
// connections (see package connlimit). In local mode it waits up to 5 s
// (bounded by ctx) for the pool to be ready.
func (g *Gateway) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return err
	}
	if err := g.startAdmin(); err != nil {
		ln.Close()
		return fmt.Errorf("GATEWAY_ADMIN_ADDR: %w", err)
	}
	maxConns := g.cfg.MaxConns
	if maxConns <= 0 {
		maxConns = connlimit.DefaultMax()
	}
	g.ln = connlimit.Wrap(ln, maxConns, g.srv)
	go func() {
		if err := g.srv.Serve(g.ln); !errors.Is(err, http.ErrServerClosed) {
			g.serveErr <- err
		}
	}()
	if g.emu != nil && (g.pool != nil || g.reqOnly != nil) {
		// Give the banner a ready pool; if the first dials are slow the
		// gateway still serves (503 until ready).
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := g.waitReady(wctx); err != nil {
			g.log.Warn("pool not ready yet", "err", err)
		}
		cancel()
	}
	if g.pool != nil {
		go g.releaseStartupMemory()
	}
	host, _, _ := net.SplitHostPort(g.cfg.Addr)
	if g.cfg.AllowInsecureBind && len(g.cfg.APIKeys) == 0 && !config.IsLoopback(host) {
		g.log.Warn("INSECURE BIND: listening on a non-loopback address without API keys (GATEWAY_ALLOW_INSECURE_BIND=true); anyone who can reach it can send messages and mint relay tokens",
			"addr", g.Addr())
	}
	g.warnBroadRule()
	g.log.Info("gateway listening", "addr", g.Addr(), "relay", g.creds, "local_mode", g.emu != nil,
		"mode", g.cfg.Mode, "pool_size", g.cfg.PoolSize, "api_keys", len(g.cfg.APIKeys), "max_conns", maxConns)
	return nil
}

// Err delivers the HTTP server's error if it stops serving on its own.
func (g *Gateway) Err() <-chan error { return g.serveErr }

// Addr is the HTTP listen address; empty before Start.
func (g *Gateway) Addr() string {
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// Pool is the sender pool, nil with WithRelayer.
func (g *Gateway) Pool() *relay.Pool { return g.pool }

// Banner tells a person what local mode is and how to try it; call it
// after Start, in local mode.
func (g *Gateway) Banner(out io.Writer) {
	if g.emu == nil {
		return
	}
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

`, g.emu.Addr(), LocalEntity, base, base, base, auth, base)
}

// Drain is the first step of a graceful stop (Kubernetes sends SIGTERM
// while its load balancer still routes traffic for a few seconds): /readyz
// answers 503 at once, and requests are served normally, each response
// closing its keep-alive connection, for GATEWAY_DRAIN_DELAY or until ctx
// ends. Call Shutdown after it.
func (g *Gateway) Drain(ctx context.Context) {
	g.api.Drain()
	if g.cfg.DrainDelay <= 0 {
		return
	}
	g.log.Info("draining: /readyz answers 503; serving until the listening socket closes", "delay", g.cfg.DrainDelay)
	t := time.NewTimer(g.cfg.DrainDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Shutdown stops: /readyz goes 503 (if Drain did not already), the
// listening socket and idle keep-alive connections close, busy ones close
// after their current response, in-flight requests finish, then the pool
// closes with 1000 (and local emulator and listener close), all within
// ctx.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.api.Drain()
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.log.Warn("in-flight requests did not finish in time", "err", err)
		_ = g.srv.Close()
	}
	if cerr := g.closeRelay(ctx); cerr != nil && err == nil {
		err = cerr
	}
	if cerr := g.closeAdmin(ctx); cerr != nil && err == nil {
		err = cerr
	}
	g.log.Info("stopped")
	return err
}

// closeRelay closes the pool and, in local mode, the listener and emulator.
func (g *Gateway) closeRelay(ctx context.Context) error {
	var errs []error
	if g.pool != nil {
		errs = append(errs, g.pool.Close(ctx))
	}
	if g.reqOnly != nil {
		g.reqOnly.Close()
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
