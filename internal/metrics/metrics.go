// Package metrics is the gateway's Prometheus instrumentation: one type
// that implements both api.Metrics and relay.Metrics on a registry the
// caller owns (no globals). cmd/gateway builds it; no other package
// imports Prometheus.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relaygate/relaygate/internal/relay"
)

// Gateway holds the gateway's collectors. All methods are safe for
// concurrent use and never block; MessageSent does not allocate.
type Gateway struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	problems  *prometheus.CounterVec
	relayed   *prometheus.CounterVec
	relayedB  *prometheus.CounterVec
	conns     *prometheus.GaugeVec
	connGauge [8]prometheus.Gauge // by relay.ConnState, resolved once
	dials     *prometheus.CounterVec
	closes    *prometheus.CounterVec
	sent      prometheus.Counter
	sentBytes prometheus.Counter
	rejected  *prometheus.CounterVec
	lost      prometheus.Counter
	lostBytes prometheus.Counter

	// The children of requests, latency, relayed and relayedB, by label
	// values, resolved on first use.
	reqSeries     seriesCache[requestKey, requestSeries]
	relayedSeries seriesCache[relayedKey, relayedSeries]
}

// requestKey is the label values of one request series; method and status
// are already bounded (methodLabel, statusKey).
type requestKey struct {
	route, method string
	status        int
}

type requestSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

type relayedKey struct{ frame, delivery string }

type relayedSeries struct{ count, bytes prometheus.Counter }

// New registers the gateway's collectors (plus the Go and process
// collectors) on a fresh registry.
func New() *Gateway {
	reg := prometheus.NewRegistry()
	g := &Gateway{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relaygate_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_http_problems_total", Help: "Problem (error) responses by code: request rejections and relay failures.",
		}, []string{"code"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_messages_relayed_total", Help: "Messages accepted by the relay, by frame type and delivery mode.",
		}, []string{"frame", "delivery"}),
		relayedB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_message_bytes_relayed_total", Help: "Payload bytes of relayed messages, by frame type and delivery mode.",
		}, []string{"frame", "delivery"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relaygate_pool_connections", Help: "Pooled sender connections (slots) by state.",
		}, []string{"state"}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_pool_dials_total", Help: "Relay dials by result: ok or the failure reason.",
		}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_pool_closes_total", Help: "Pooled connections ended by the relay or network, by WebSocket close code (1006: no close frame).",
		}, []string{"code"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relaygate_pool_messages_sent_total", Help: "Frames written to a healthy pooled connection.",
		}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relaygate_pool_bytes_sent_total", Help: "Payload bytes written to pooled connections.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relaygate_pool_rejected_total", Help: "Sends the pool refused, by reason.",
		}, []string{"reason"}),
	}
	g.lost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "relaygate_pool_frames_maybe_lost_total",
		Help: "Frames answered as sent that a stalled connection, closed after GATEWAY_STALL_CLOSE_AFTER, had not seen acknowledged.",
	})
	g.lostBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "relaygate_pool_bytes_maybe_lost_total", Help: "Bytes of relaygate_pool_frames_maybe_lost_total.",
	})
	reg.MustRegister(g.requests, g.latency, g.problems, g.relayed, g.relayedB, g.conns, g.dials, g.closes,
		g.sent, g.sentBytes, g.rejected, g.lost, g.lostBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for s := relay.StateConnecting; s <= relay.StateStalled; s++ {
		g.connGauge[s] = g.conns.WithLabelValues(s.String())
	}
	return g
}

// Handler serves the registry in the Prometheus text format.
func (g *Gateway) Handler() http.Handler {
	return promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg})
}

// Registry is the registry the collectors are on (for tests and extra collectors).
func (g *Gateway) Registry() *prometheus.Registry { return g.reg }

// ObserveRequest implements api.Metrics. route must come from a fixed set
// (the router's patterns or "unmatched"); method and status are bounded
// here (unknown methods count as "OTHER").
func (g *Gateway) ObserveRequest(route, method string, status int, d time.Duration) {
	k := requestKey{route: route, method: methodLabel(method), status: statusKey(status)}
	s, ok := g.reqSeries.load(k)
	if !ok {
		s = g.reqSeries.store(k, requestSeries{
			count:   g.requests.WithLabelValues(k.route, k.method, statusLabel(k.status)),
			latency: g.latency.WithLabelValues(k.route, k.method),
		})
	}
	s.count.Inc()
	s.latency.Observe(d.Seconds())
}

// Problem implements api.Metrics.
func (g *Gateway) Problem(code string) { g.problems.WithLabelValues(code).Inc() }

// Relayed implements api.Metrics.
func (g *Gateway) Relayed(frame, delivery string, n int) {
	k := relayedKey{frame: frame, delivery: delivery}
	s, ok := g.relayedSeries.load(k)
	if !ok {
		s = g.relayedSeries.store(k, relayedSeries{
			count: g.relayed.WithLabelValues(frame, delivery),
			bytes: g.relayedB.WithLabelValues(frame, delivery),
		})
	}
	s.count.Inc()
	s.bytes.Add(float64(n))
}

// ConnStateChanged implements relay.Metrics.
func (g *Gateway) ConnStateChanged(from, to relay.ConnState) {
	if gg := g.gauge(from); gg != nil {
		gg.Dec()
	}
	if gg := g.gauge(to); gg != nil {
		gg.Inc()
	}
}

func (g *Gateway) gauge(s relay.ConnState) prometheus.Gauge {
	if s <= relay.StateNone || int(s) >= len(g.connGauge) {
		return nil
	}
	return g.connGauge[s]
}

// Dialed implements relay.Metrics.
func (g *Gateway) Dialed(result string) { g.dials.WithLabelValues(result).Inc() }

// ConnClosed implements relay.Metrics.
func (g *Gateway) ConnClosed(code int) { g.closes.WithLabelValues(closeCodeLabel(code)).Inc() }

// MessageSent implements relay.Metrics.
func (g *Gateway) MessageSent(n int) {
	g.sent.Inc()
	g.sentBytes.Add(float64(n))
}

// FramesMaybeLost implements relay.LossMetrics.
func (g *Gateway) FramesMaybeLost(frames, bytes int) {
	g.lost.Add(float64(frames))
	g.lostBytes.Add(float64(bytes))
}

// Rejected implements relay.Metrics.
func (g *Gateway) Rejected(reason string) { g.rejected.WithLabelValues(reason).Inc() }
