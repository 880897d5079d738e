package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof" // its init also registers on http.DefaultServeMux, which the gateway never serves
	"time"
)

// admin is the admin listener (GATEWAY_ADMIN_ADDR): GET /metrics and, with
// GATEWAY_PPROF, /debug/pprof/. It is separate from the API so that API
// clients can neither read nor grow the metrics, and it binds loopback by
// default. /healthz and /readyz stay on the API address, where
// orchestrators probe them.
type admin struct {
	srv *http.Server
	ln  net.Listener
}

// adminHandler routes the admin listener.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metrics.Handler())
	if g.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// startAdmin binds GATEWAY_ADMIN_ADDR (if set) and serves it in the
// background; a bind error is returned.
func (g *Gateway) startAdmin() error {
	if g.cfg.AdminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", g.cfg.AdminAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: g.adminHandler(),
		// Scrapes are small requests from one client.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A CPU profile or trace runs for its "seconds" (default 30).
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  60 * time.Second,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	g.admin = &admin{srv: srv, ln: ln}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("admin listener failed", "err", err)
		}
	}()
	g.log.Info("admin listening", "addr", ln.Addr().String(), "pprof", g.cfg.Pprof)
	return nil
}

// closeAdmin stops the admin listener (last, so the final scrape can
// still see the drain).
func (g *Gateway) closeAdmin(ctx context.Context) error {
	if g.admin == nil {
		return nil
	}
	if err := g.admin.srv.Shutdown(ctx); err != nil {
		return g.admin.srv.Close()
	}
	return nil
}
