package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relaygate/relaygate/internal/emulator"
)

// metrics implements emulator.Metrics with Prometheus collectors on its own
// registry. Safe for concurrent use.
type metrics struct {
	reg       *prometheus.Registry
	listeners prometheus.Gauge
	pending   prometheus.Gauge
	messages  prometheus.Counter
	bytes     prometheus.Counter
	rejected  *prometheus.CounterVec
}

var _ emulator.Metrics = (*metrics)(nil)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		listeners: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_emulator_listeners", Help: "Connected listener control channels.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_emulator_pending", Help: "Senders waiting for a listener (pending accepts and HTTP requests).",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_emulator_messages_relayed_total", Help: "WebSocket messages relayed between senders and listeners.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_emulator_bytes_relayed_total", Help: "Payload bytes of relayed WebSocket messages.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_emulator_rejections_total", Help: "Refused or failed connections and requests, by reason.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.listeners, m.pending, m.messages, m.bytes, m.rejected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) ListenersChanged(d int) { m.listeners.Add(float64(d)) }
func (m *metrics) PendingChanged(d int)   { m.pending.Add(float64(d)) }
func (m *metrics) MessageRelayed(n int64) { m.messages.Inc(); m.bytes.Add(float64(n)) }
func (m *metrics) Rejected(reason string) { m.rejected.WithLabelValues(reason).Inc() }

// handler serves GET /metrics.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}
