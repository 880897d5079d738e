package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/metrics"
	"github.com/relaygate/relaygate/internal/relay"
)

var (
	_ api.Metrics   = (*metrics.Gateway)(nil)
	_ relay.Metrics = (*metrics.Gateway)(nil)
)

func TestExposition(t *testing.T) {
	t.Parallel()
	g := metrics.New()
	g.ObserveRequest("/messages", "POST", 202, 3*time.Millisecond)
	g.Problem("overloaded")
	g.Relayed("text", "send", 5)
	g.ConnStateChanged(relay.StateNone, relay.StateConnecting)
	g.ConnStateChanged(relay.StateConnecting, relay.StateReady)
	g.ConnStateChanged(relay.StateNone, relay.StateConnecting)
	g.Dialed("not_found")
	g.ConnClosed(1011)
	g.MessageSent(5)
	g.Rejected("queue_full")
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`relaygate_http_requests_total{method="POST",route="/messages",status="202"} 1`,
		`relaygate_http_request_duration_seconds_count{method="POST",route="/messages"} 1`,
		`relaygate_http_problems_total{code="overloaded"} 1`,
		`relaygate_messages_relayed_total{delivery="send",frame="text"} 1`,
		`relaygate_pool_connections{state="ready"} 1`,
		`relaygate_pool_connections{state="connecting"} 1`,
		`relaygate_pool_dials_total{result="not_found"} 1`,
		`relaygate_pool_closes_total{code="1011"} 1`,
		`relaygate_pool_messages_sent_total 1`,
		`relaygate_pool_bytes_sent_total 5`,
		`relaygate_pool_rejected_total{reason="queue_full"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

func TestMessageSentDoesNotAllocate(t *testing.T) {
	g := metrics.New()
	if n := testing.AllocsPerRun(100, func() { g.MessageSent(10) }); n != 0 {
		t.Errorf("MessageSent allocates %v times", n)
	}
}

func TestRequestPathDoesNotAllocate(t *testing.T) {
	g := metrics.New()
	g.ObserveRequest("/messages", "POST", 202, time.Millisecond) // resolves the series
	g.Relayed("text", "send", 10)
	if n := testing.AllocsPerRun(100, func() {
		g.ObserveRequest("/messages", "POST", 202, time.Millisecond)
		g.Relayed("text", "send", 10)
	}); n != 0 {
		t.Errorf("ObserveRequest and Relayed allocate %v times", n)
	}
}

// TestCachedSeriesConcurrent records the same and different series from
// several goroutines (for -race) and checks every observation is counted
// once, on the series its labels name.
func TestCachedSeriesConcurrent(t *testing.T) {
	t.Parallel()
	g := metrics.New()
	const workers, each = 4, 50
	statuses := []int{200, 202, 400, 503, 42}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range each {
				g.ObserveRequest("/messages", "POST", statuses[i%len(statuses)], time.Millisecond)
				g.Relayed("text", "send", 1)
			}
		})
	}
	wg.Wait()
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`relaygate_http_requests_total{method="POST",route="/messages",status="202"} 40`,
		`relaygate_http_requests_total{method="POST",route="/messages",status="other"} 40`,
		`relaygate_http_request_duration_seconds_count{method="POST",route="/messages"} 200`,
		`relaygate_messages_relayed_total{delivery="send",frame="text"} 200`,
		`relaygate_message_bytes_relayed_total{delivery="send",frame="text"} 200`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
