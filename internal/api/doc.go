// Package api serves the gateway's REST surface (openapi.yaml at the
// repository root): POST /messages, GET /token, /healthz, /readyz and
// /openapi.yaml. /metrics is not here: the gateway serves it on its admin
// listener (internal/gateway).
//
// It owns no connections. It reaches the relay only through the small
// interfaces it defines (Relayer, Requester, ReadinessChecker), so handler
// tests use function-field fakes and cmd/gateway plugs in the real
// relay.Pool and relay.HTTPSender. It imports internal/relay for types and
// sentinel errors only, and never Prometheus: metrics go through Metrics.
//
// Every non-2xx response is an RFC 9457 problem document built from the one
// codes table in problem.go; relay errors are mapped in one function,
// problemFor.
//
// The request path is allocation-light (about 9 allocations per POST
// /messages): bodies and frames live in pooled buffers, JSON bodies are read
// by a strict hand-rolled scanner (sendjson.go; names are case-sensitive and
// may appear once, which encoding/json does not enforce), and the request id
// lives in the response header rather than a copied request context.
//
// Some bad requests never reach the handler: net/http answers them itself,
// as text/plain, and http.Server has no hook to change that (Go 1.26): 431
// for headers over MaxHeaderBytes, 400 for a malformed request line,
// header, Host or Content-Length, 501 for a Transfer-Encoding other than
// chunked, 417 for an unknown Expect. ("OPTIONS *" does reach the router:
// DisableGeneralOptionsHandler.) A request with both Content-Length and
// chunked Transfer-Encoding is framed as chunked and its Content-Length
// dropped (RFC 9112 §6.3) before the handler runs, so the handler cannot
// refuse it; as the endpoint rather than an intermediary, the gateway
// cannot be desynchronised by it. TestBadInput pins all of these.
package api
