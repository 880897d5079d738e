// Command gateway is relaygate's HTTP gateway: POST /messages and
// GET /token in front of one Azure Relay Hybrid Connection. Configuration
// comes from GATEWAY_* variables (gateway -h lists them). Without relay
// credentials it runs in local mode: an in-process relay emulator on
// loopback and a built-in listener that logs every message. The gateway
// itself is assembled by internal/gateway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/gateway"
	"github.com/relaygate/relaygate/internal/logging"
	"github.com/relaygate/relaygate/internal/memlimit"
	"github.com/relaygate/relaygate/internal/tracing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run loads the configuration, serves until ctx is done and shuts down
// within the grace period.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := config.LoadGateway(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	// Log lines (one per request at info) are buffered and flushed every
	// 200 ms, at once for warnings and errors, and at exit: no line is lost.
	bw := logging.NewBuffered(stderr, 0, 0)
	defer bw.Close()
	log, err := logging.New(bw, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	log = slog.New(logging.NewLevelFlusher(log.Handler(), bw, slog.LevelWarn))
	mem, err := memlimit.Decide(memlimit.Input{GOMEMLIMIT: os.Getenv("GOMEMLIMIT"),
		Configured: cfg.MemoryLimit, ConfiguredSet: cfg.MemoryLimitSet(), Default: config.GatewayDefaults().MemoryLimit})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	memlimit.Apply(mem, log)
	if gateway.TuneGC(os.Getenv("GOGC"), mem.Limit) {
		log.Info("garbage collector", "gogc", gateway.GCPercent, "why", "GOGC unset and a memory limit applies")
	}
	tp, err := tracing.New(ctx, "relaygate-gateway", os.Getenv)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer flushTraces(tp, log)
	log.Info("tracing", "otlp_export", tp.Exporting(), "envelope_traceparent", cfg.EnvelopeTraceparent)
	g, err := gateway.New(cfg, log, gateway.WithTracerProvider(tp.TracerProvider()))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("gateway: %w", err), shutdown(g, cfg, false))
	}
	g.Banner(stderr)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain", cfg.DrainDelay, "grace", cfg.ShutdownTimeout)
		return shutdown(g, cfg, true)
	case err := <-g.Err():
		log.Error("http server failed", "err", err)
		return shutdown(g, cfg, false)
	}
}

// flushTraces exports the spans still buffered, within 5 s.
func flushTraces(tp *tracing.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("exporting the last spans failed", "err", err)
	}
}

// shutdown drains g for GATEWAY_DRAIN_DELAY (when drain is set), then
// stops it within GATEWAY_SHUTDOWN_TIMEOUT, on fresh contexts (the signal
// context is already done). A second signal ends the drain early.
func shutdown(g *gateway.Gateway, cfg config.Gateway, drain bool) error {
	if drain {
		dctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		g.Drain(dctx)
		stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return g.Shutdown(ctx)
}
