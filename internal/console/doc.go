// Package console serves the gateway's browser console at GET /: a page to
// see the target and the pool's state, send messages, mint sender tokens
// and, in local mode, watch what the built-in listener receives.
//
// The page, its script and its stylesheet are plain files embedded with a
// //go:embed directive (no build step, no CDN) and served under a strict
// Content-Security-Policy: no inline script or style, connect-src 'self',
// frame-ancestors 'none', Trusted Types enforced. The script talks only to
// the gateway's own REST surface (POST /messages, GET /token, GET /readyz)
// plus GET /console/status and the GET /console/events feed.
//
// API keys: the page keeps the key the user types in memory only (no
// storage, no cookie) and sends it as X-API-Key or Authorization: Bearer.
// The feed is read with fetch streaming rather than EventSource, which
// cannot set headers, so the feed is behind the same API keys as the rest
// and the key never appears in a URL.
//
// Feed is the server-sent-events broadcaster that cmd/gateway feeds from
// its built-in listener. Shutdown: http.Server.Shutdown does not interrupt
// handlers, so cmd/gateway registers Feed.Close with RegisterOnShutdown.
//
// The package imports internal/relay for types only (PoolStats,
// Credentials) and must not import api, emulator, chi or Prometheus;
// internal/api mounts its handlers.
package console
