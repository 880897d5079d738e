// Command listener is a Hybrid Connections listener: it prints every
// WebSocket message it receives as one JSON line on stdout and, with
// --forward URL, relays HTTP requests and messages to a local service.
// Logs go to stderr. Run `listener -h` for every variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/logging"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/tracing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		os.Exit(1)
	}
}

// run wires config, logger, forward.Handler and relay.Listener, and returns
// when ctx ends (nil) or the relay refuses the listener for good.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadListener(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials()
	if err != nil {
		return err
	}
	client, err := cfg.RelayHTTPClient()
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}

	tp, err := tracing.New(ctx, "relaygate-listener", os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(fctx); err != nil {
			log.Warn("exporting the last spans failed", "err", err)
		}
	}()
	h, err := forward.New(forward.Config{
		Target:         cfg.ForwardURL(),
		StripPrefix:    "/" + creds.EntityPath,
		Timeout:        cfg.ForwardTimeout,
		MaxBodyBytes:   cfg.MaxMessageBytes,
		TracerProvider: tp.TracerProvider(),
	}, stdout, log)
	if err != nil {
		return err
	}
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials:  creds,
		ConnHandler:  func(ctx context.Context, c *relay.ListenerConn) { h.ServeConn(ctx, c) },
		HTTPHandler:  h,
		TokenTTL:     cfg.TokenTTL,
		PingInterval: cfg.PingInterval,
		ReadLimit:    cfg.MaxMessageBytes,
		HTTPClient:   client,
		// Validated by config: header, query or auto.
		TokenPlacement: relay.TokenPlacement(cfg.TokenPlacement),
	}, log)
	if err != nil {
		return err
	}
	defer l.Close()

	mode := "print"
	if u := cfg.ForwardURL(); u != nil {
		mode = "forward to " + forward.Shown(u)
	}
	log.Info("listener starting", "relay", creds, "mode", mode, "otlp_export", tp.Exporting())
	if err := l.Run(ctx); err != nil {
		return explain(err, creds)
	}
	log.Info("listener stopped")
	return nil
}

// explain turns the relay's final refusals into advice naming the entity,
// never the key.
func explain(err error, c relay.Credentials) error {
	switch {
	case errors.Is(err, relay.ErrUnauthorized):
		return fmt.Errorf("the relay refused the credentials for %s (401): check the key name and key: %w", c, err)
	case errors.Is(err, relay.ErrForbidden):
		return fmt.Errorf("the relay refused to let %s listen (403): the SAS rule needs the Listen right on this hybrid connection: %w", c, err)
	case errors.Is(err, relay.ErrEntityNotFound):
		return fmt.Errorf("hybrid connection %q does not exist on %s (404): create it, or check EntityPath: %w", c.EntityPath, c.Host, err)
	}
	return err
}
