package gateway

import "go.opentelemetry.io/otel/trace"

// WithTracerProvider records a server span per request with tp (see
// api.Config.TracerProvider); without it the gateway records none but
// still passes its callers' trace context on.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(g *Gateway) { g.tracerProvider = tp }
}
