package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaygate/relaygate/internal/relay"
)

// traceContext reads and writes W3C trace context (traceparent,
// tracestate).
var traceContext propagation.TraceContext

// tracerName names the forward package's tracer.
const tracerName = "github.com/relaygate/relaygate/internal/forward"

// traceMessage continues the trace of a WebSocket message: its parent is
// the "traceparent" of a gateway envelope {"id":…,"traceparent":…,…}
// (GATEWAY_ENVELOPE_TRACEPARENT). With Config.TracerProvider it starts a
// consumer span, which the caller ends; without one the returned span is
// a no-op and ctx carries the sender's span context on, or nothing.
func (h *Handler) traceMessage(ctx context.Context, connID string, typ relay.MessageType, data []byte) (context.Context, trace.Span) {
	if typ == relay.MessageText {
		if tp := envelopeTraceparent(data); tp != "" {
			ctx = traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
		}
	}
	if h.tracer == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return h.tracer.Start(ctx, "forward message", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("relaygate.connection", connID),
		attribute.String("relaygate.message_type", typ.String()),
		attribute.Int("relaygate.message_bytes", len(data)),
	))
}

// traceRequest continues the trace of a relayed HTTP request from its
// traceparent and tracestate headers, with a server span when traced.
func (h *Handler) traceRequest(r *http.Request) (*http.Request, trace.Span) {
	if _, ok := r.Header["Traceparent"]; !ok && h.tracer == nil {
		return r, trace.SpanFromContext(r.Context())
	}
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if h.tracer == nil {
		return r.WithContext(ctx), trace.SpanFromContext(ctx)
	}
	ctx, span := h.tracer.Start(ctx, "forward "+r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
	))
	return r.WithContext(ctx), span
}

// envelopeTraceparent returns the "traceparent" string of a gateway
// envelope, which the gateway writes second, right after "id"; "" for
// anything else. It reads only the first two members.
func envelopeTraceparent(data []byte) string {
	if !bytes.HasPrefix(data, []byte(`{"id":`)) {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for range 2 {
		k, err := dec.Token()
		if err != nil {
			return ""
		}
		v, err := dec.Token()
		if err != nil {
			return ""
		}
		s, ok := v.(string) // a Delim (object, array) ends the search too
		if !ok {
			return ""
		}
		if k == "traceparent" {
			return s
		}
	}
	return ""
}
