// Package gateway assembles relaygate's HTTP gateway and owns its
// lifecycle: from a config.Gateway, New builds the sender pool
// (internal/relay), the metrics, and the HTTP API (internal/api) with the
// browser console; without relay credentials it also runs local mode, an
// in-process relay emulator and a listener that logs every message.
// Start binds and serves, Shutdown drains (readyz 503, in-flight requests
// finish, then pooled connections close).
//
// cmd/gateway only loads the configuration, sets up logging and signals,
// and calls New, Start, Banner and Shutdown; the benchmark (internal/bench) builds its gateway here
// too, so there is one wiring.
package gateway
