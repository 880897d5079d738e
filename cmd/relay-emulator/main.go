// Command relay-emulator is a local Azure Relay Hybrid Connections
// emulator for development and CI: listeners, WebSocket senders and HTTP
// request mode with SAS authentication, over ws:// (or wss:// with TLS).
// Run `relay-emulator -h` for every flag and variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "relay-emulator:", err)
		os.Exit(1)
	}
}

// run wires config, logger, metrics and the emulator, prints the
// development connection string when it generated the key, and returns when
// ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadEmulator(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	ecfg, dev, entity, err := emulator.ConfigFrom(cfg)
	if err != nil {
		return err
	}
	m := newMetrics()
	srv, err := emulator.New(ecfg, log, m)
	if err != nil {
		return err
	}
	if err := srv.Open(); err != nil {
		return err
	}
	var admin *http.Server
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			srv.Close(context.Background())
			return fmt.Errorf("metrics listener: %w", err)
		}
		admin = &http.Server{Handler: m.handler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go admin.Serve(ln)
		log.Info("metrics listening", slog.String("addr", ln.Addr().String()))
	}
	if dev != nil {
		// The only place the key is ever written: once, on stdout.
		fmt.Fprintln(stdout, devConnectionString(srv, dev, entity))
		log.Info("no --rule given: generated a development key; the connection string was printed on stdout",
			slog.String("key_name", dev.Name), slog.String("entity", entity))
	}

	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if admin != nil {
		admin.Shutdown(sctx)
	}
	return srv.Close(sctx)
}

// devConnectionString is the ready-to-use connection string for the
// generated rule. A wildcard listen address is shown as 127.0.0.1.
func devConnectionString(s *emulator.Server, r *emulator.Rule, entity string) string {
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	cs := fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s",
		net.JoinHostPort(host, port), r.Name, r.Key, entity)
	if !s.TLS() {
		cs += ";UseDevelopmentEmulator=true"
	}
	return cs
}
