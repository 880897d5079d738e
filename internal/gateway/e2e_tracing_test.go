package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// Trace context of the caller in the tracing tests.
const (
	callerTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID      = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

// received is what the local service behind the listener got.
type received struct {
	traceparent string
	body        string
}

// traced is a gateway and a forwarding listener (cmd/listener's
// forward.Handler) on one emulator, each with its own tracer provider
// (as in two processes) recording into one in-memory exporter, and the
// local service the listener forwards to.
type traced struct {
	*e2e
	spans  *tracetest.InMemoryExporter
	target chan received
}

// startTraced starts them; tracing false gives the gateway and the
// listener no tracer provider (trace context is then only passed on).
func startTraced(t *testing.T, tracing bool, mod func(*config.Gateway)) *traced {
	t.Helper()
	e := newE2E(t)
	tr := &traced{e2e: e, spans: tracetest.NewInMemoryExporter(), target: make(chan received, 16)}
	provider := func() trace.TracerProvider {
		if !tracing {
			return nil
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tr.spans))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}

	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		tr.target <- received{traceparent: r.Header.Get("Traceparent"), body: string(b)}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(svc.Close)
	u, _ := url.Parse(svc.URL)
	fh, err := forward.New(forward.Config{Target: u, StripPrefix: "/" + entity, TracerProvider: provider()}, io.Discard, e.log.With("component", "forward"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: e.emu.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) { fh.ServeConn(ctx, c) },
		HTTPHandler: fh,
	}, e.log.With("component", "listener"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(context.Background()) }()
	t.Cleanup(func() { l.Close(); <-done })

	cr := e.emu.Credentials(entity)
	cfg := testConfig()
	cfg.Namespace, cfg.EntityPath, cfg.KeyName, cfg.Key, cfg.Emulator = cr.Host, cr.EntityPath, cr.KeyName, cr.Key, true
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg, e.log.With("component", "gateway"), WithTracerProvider(provider()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.shutdown() })
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.gw, e.base = g, "http://"+g.Addr()
	e.waitReady()
	return tr
}

// next returns what the local service received next.
func (tr *traced) next() received {
	tr.t.Helper()
	select {
	case r := <-tr.target:
		return r
	case <-time.After(10 * time.Second):
		tr.t.Fatal("the local service received nothing")
	}
	return received{}
}

// twoSpans waits for the gateway's and the listener's span (a listener's
// span ends after its forward returns) and returns them.
func (tr *traced) twoSpans(listenerSpan string) (gw, ln tracetest.SpanStub) {
	tr.t.Helper()
	testlog.WaitFor(tr.t, "two spans", func() bool { return len(tr.spans.GetSpans()) >= 2 })
	for _, s := range tr.spans.GetSpans() {
		switch s.Name {
		case "POST /messages":
			gw = s
		case listenerSpan:
			ln = s
		}
	}
	if gw.Name == "" || ln.Name == "" {
		tr.t.Fatalf("spans %v: want POST /messages and %s", names(tr.spans.GetSpans()), listenerSpan)
	}
	return gw, ln
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// checkChain: the gateway span continues the caller's (or starts the
// trace), the listener's is its child, and the local service got the
// listener span's traceparent.
func checkChain(t *testing.T, gw, ln tracetest.SpanStub, got received, callerTrace string) {
	t.Helper()
	if gw.SpanKind != trace.SpanKindServer {
		t.Errorf("gateway span kind %v", gw.SpanKind)
	}
	if callerTrace != "" {
		if gw.SpanContext.TraceID().String() != callerTraceID || gw.Parent.SpanID().String() != callerSpanID || !gw.Parent.IsRemote() {
			t.Errorf("gateway span %s (parent %s) does not continue the caller's %s", gw.SpanContext.TraceID(), gw.Parent.SpanID(), callerTraceparent)
		}
	} else if gw.Parent.IsValid() {
		t.Errorf("gateway span has a parent %v without a traceparent", gw.Parent)
	}
	if ln.SpanContext.TraceID() != gw.SpanContext.TraceID() {
		t.Errorf("listener span in trace %s, gateway span in %s", ln.SpanContext.TraceID(), gw.SpanContext.TraceID())
	}
	if ln.Parent.SpanID() != gw.SpanContext.SpanID() || !ln.Parent.IsRemote() {
		t.Errorf("listener span's parent %s, want the gateway span %s", ln.Parent.SpanID(), gw.SpanContext.SpanID())
	}
	want := "00-" + ln.SpanContext.TraceID().String() + "-" + ln.SpanContext.SpanID().String() + "-01"
	if got.traceparent != want {
		t.Errorf("the local service got traceparent %q, want the listener span's %q", got.traceparent, want)
	}
}

// TestTraceWebSocketMessage: a POST with a traceparent yields a gateway
// span and a listener span in the caller's trace; the traceparent reaches
// the listener in the envelope (GATEWAY_ENVELOPE_TRACEPARENT).
func TestTraceWebSocketMessage(t *testing.T) {
	tr := startTraced(t, true, func(c *config.Gateway) { c.EnvelopeTraceparent = true })
	resp, body := tr.do(http.MethodPost, "/messages", "application/json", []byte(`{"id":"m1","message":{"a":1}}`),
		"traceparent", callerTraceparent, "tracestate", "vendor=x")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	got := tr.next()
	gw, ln := tr.twoSpans("forward message")
	checkChain(t, gw, ln, got, callerTraceID)
	wantEnv := `{"id":"m1","traceparent":"00-` + callerTraceID + "-" + gw.SpanContext.SpanID().String() + `-01","message":{"a":1}}`
	if got.body != wantEnv {
		t.Errorf("envelope %s, want %s", got.body, wantEnv)
	}
}

// TestTraceRequestMode: in HTTP request mode the trace context travels
// as headers; without a caller's traceparent the gateway starts the trace.
func TestTraceRequestMode(t *testing.T) {
	tr := startTraced(t, true, nil)
	resp, body := tr.do(http.MethodPost, "/messages?delivery=request", "application/json", []byte(`{"message":"hi"}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	got := tr.next()
	gw, ln := tr.twoSpans("forward POST")
	checkChain(t, gw, ln, got, "")
}

// TestTraceOff: by default the envelope is unchanged (so a WebSocket
// message carries no trace context), and without tracer providers no span
// is recorded yet the caller's trace context is passed on unchanged: as
// headers in request mode, in the envelope when enabled.
func TestTraceOff(t *testing.T) {
	tr := startTraced(t, false, nil)
	tr.do(http.MethodPost, "/messages", "application/json", []byte(`{"id":"m1","message":1}`), "traceparent", callerTraceparent)
	if got := tr.next(); got.body != `{"id":"m1","message":1}` || got.traceparent != "" {
		t.Errorf("default: the local service got %+v", got)
	}
	tr.do(http.MethodPost, "/messages?delivery=request", "text/plain", []byte("hi"), "traceparent", callerTraceparent)
	if got := tr.next(); got.traceparent != callerTraceparent {
		t.Errorf("request mode: the local service got traceparent %q", got.traceparent)
	}

	tr2 := startTraced(t, false, func(c *config.Gateway) { c.EnvelopeTraceparent = true })
	tr2.do(http.MethodPost, "/messages", "application/json", []byte(`{"id":"m2","message":2}`), "traceparent", callerTraceparent)
	if got := tr2.next(); !strings.Contains(got.body, `"traceparent":"`+callerTraceparent+`"`) || got.traceparent != callerTraceparent {
		t.Errorf("envelope on: the local service got %+v", got)
	}
	if n := len(tr.spans.GetSpans()) + len(tr2.spans.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded without a tracer provider", n)
	}
}
