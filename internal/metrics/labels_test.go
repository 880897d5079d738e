package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/metrics"
	"github.com/relaygate/relaygate/internal/relay"
)

type discardRelayer struct{}

func (discardRelayer) Send(context.Context, relay.Message) error { return nil }

// TestInventedMethodsAndPathsDoNotGrowMetrics: 5,000 requests with
// invented methods and paths to a real gateway server add no series to
// /metrics (issue 12, item 1).
func TestInventedMethodsAndPathsDoNotGrowMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	srv := api.New(api.Config{ListenAddr: "127.0.0.1:0"}, discardRelayer{}, nil,
		slog.New(slog.DiscardHandler), m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer(srv.Handler())
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	client := &http.Client{}
	invent := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			method := fmt.Sprintf("M%d%s", i, strings.Repeat("X", 200))
			path := []string{"/messages", "/token", "/healthz", fmt.Sprintf("/invented/%d/%s", i, strings.Repeat("p", 200))}[i%4]
			req, err := http.NewRequest(method, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	series := func() (int, int) {
		t.Helper()
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b := rec.Body.Bytes()
		n := 0
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "relaygate_http_") {
				n++
			}
		}
		return n, len(b)
	}
	invent(0, 8) // every kind of invented request once
	before, size := series()
	invent(8, 5008)
	after, sizeAfter := series()
	if after != before {
		t.Errorf("relaygate_http_* series: %d before, %d after 5,000 invented requests", before, after)
	}
	t.Logf("relaygate_http_* series %d → %d, /metrics %d → %d bytes", before, after, size, sizeAfter)
}
