package api

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext reads and writes W3C trace context: the traceparent and
// tracestate headers.
var traceContext propagation.TraceContext

// tracerName names the api's tracer (the instrumentation scope).
const tracerName = "github.com/relaygate/relaygate/internal/api"

// traceRequests continues the caller's W3C trace context (traceparent,
// tracestate) in the request's context, from where it is passed on: as
// headers in HTTP request mode (RelayRequester) and, with
// Config.EnvelopeTraceparent, in the JSON envelope of a WebSocket message.
// With Config.TracerProvider it also records one server span per request
// (a child of the caller's span, or a new trace). Without one, a request
// without traceparent costs one map lookup and no allocation.
func (s *Server) traceRequests(next http.Handler) http.Handler {
	tp := s.cfg.TracerProvider
	if tp == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Header["Traceparent"]; ok {
				r = r.WithContext(traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
			}
			next.ServeHTTP(w, r)
		})
	}
	tracer := tp.Tracer(tracerName)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("relaygate.request_id", requestIDOf(w)),
		))
		defer span.End()
		ww := getStatusWriter(w)
		defer ww.release()
		next.ServeHTTP(ww, r.WithContext(ctx))
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if rc := chi.RouteContext(ctx); rc != nil && rc.RoutePattern() != "" {
			span.SetName(r.Method + " " + rc.RoutePattern())
			span.SetAttributes(attribute.String("http.route", rc.RoutePattern()))
		}
		if status >= 500 {
			span.SetStatus(otelcodes.Error, http.StatusText(status))
		}
	})
}

// envelopeTraceparent is the "traceparent" of a JSON message's envelope:
// the span context of ctx in W3C form, or "" when
// Config.EnvelopeTraceparent is off or ctx carries none.
func (s *Server) envelopeTraceparent(ctx context.Context) string {
	if !s.cfg.EnvelopeTraceparent {
		return ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// injectTraceContext adds the traceparent and tracestate of ctx's span
// (if any) to h, for the listener in HTTP request mode.
func injectTraceContext(ctx context.Context, h http.Header) {
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}
