// Package tracing sets up OpenTelemetry trace export for the commands:
// spans go over OTLP/HTTP when the standard OTEL_EXPORTER_OTLP_ENDPOINT
// (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and nowhere otherwise.
// The SDK reads the other standard variables itself (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS,
// …). Nothing here sets an OpenTelemetry global: the provider is handed to
// the packages that trace (api, forward), which propagate W3C trace
// context (traceparent, tracestate) with propagation.TraceContext.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Provider is the tracing of a command and how to stop it.
type Provider struct {
	sdk *sdktrace.TracerProvider // nil when not exporting
}

// Exporting reports whether spans are exported.
func (p *Provider) Exporting() bool { return p.sdk != nil }

// TracerProvider is what to hand to api.Config and forward.Config: the
// SDK's provider, or nil when not exporting (they then record no span,
// allocate nothing for it, and still pass incoming trace context on).
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p.sdk == nil {
		return nil
	}
	return p.sdk
}

// Shutdown flushes the spans not yet exported and stops the exporter,
// within ctx. It is a no-op when not exporting.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// Enabled reports whether the OTEL_* variables (looked up with getenv)
// ask for OTLP trace export: an endpoint is set, the SDK is not disabled
// (OTEL_SDK_DISABLED) and OTEL_TRACES_EXPORTER is unset or "otlp".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e != "" && e != "otlp" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// New returns the provider of service (the default service.name, which
// OTEL_SERVICE_NAME overrides): an OTLP/HTTP exporter with a batching span
// processor when Enabled(getenv), else none. opts are for tests. Errors
// name the variable at fault.
func New(ctx context.Context, service string, getenv func(string) string, opts ...otlptracehttp.Option) (*Provider, error) {
	if !Enabled(getenv) {
		return &Provider{}, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(name)); p != "" {
			if p != "http/protobuf" {
				return nil, fmt.Errorf("%s: %q is not supported; use http/protobuf", name, p)
			}
			break // the more specific variable wins
		}
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{sdk: sdk}, nil
}
