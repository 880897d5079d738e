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
package api
