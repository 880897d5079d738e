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
	"runtime/debug"
	"syscall"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/gateway"
	"github.com/relaygate/relaygate/internal/logging"
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
	if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	g, err := gateway.New(cfg, log)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("gateway: %w", err), shutdown(g, cfg))
	}
	g.Banner(stderr)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	case err := <-g.Err():
		log.Error("http server failed", "err", err)
	}
	return shutdown(g, cfg)
}

// shutdown stops g within the grace period, on a fresh context (the
// signal context is already done).
func shutdown(g *gateway.Gateway, cfg config.Gateway) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return g.Shutdown(ctx)
}
