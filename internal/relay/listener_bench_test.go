//go:build unix

package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/relay"
)

// BenchmarkListenerPrintEmulator is BenchmarkHTTPSenderEmulator with
// cmd/listener's print-mode handler (lines to io.Discard, no logging): the
// listener answers every request with a receipt body, as in the benchmark
// command's request-mode runs.
func BenchmarkListenerPrintEmulator(b *testing.B) {
	h, err := forward.New(forward.Config{}, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	benchRequestMode(b, h, "messages", http.StatusOK)
}

// BenchmarkListenerServeInline is the listener's share of request mode:
// inline requests (100 B JSON bodies, 64 in flight) dispatched as the
// control channel's reader dispatches them, served by cmd/listener's
// print-mode handler and encoded as response commands. The control
// channel itself is left out.
func BenchmarkListenerServeInline(b *testing.B) {
	h, err := forward.New(forward.Config{}, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: relay.Credentials{Host: "ns.example", EntityPath: "hc1", KeyName: "k", Key: "secret"},
		HTTPHandler: h,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"id":"` + strings.Repeat("7", 36) + `","message":"` + strings.Repeat("m", 47) + `"}`)[:100]
	hasBody := true
	cmd := &relay.RequestCommand{
		ID: relay.NewID(), Method: "POST", RequestTarget: "/hc1/messages", Body: &hasBody,
		RequestHeaders: map[string]string{"Content-Type": "application/json", "X-Request-Id": relay.NewID()},
	}
	ctx := context.Background()
	inFlight := make(chan struct{}, 64)
	done := func(msg, _ []byte) {
		if len(msg) == 0 {
			b.Error("no response command")
		}
		<-inFlight
	}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		inFlight <- struct{}{}
		l.ServeInlineAsync(ctx, cmd, body, done)
	}
	for range cap(inFlight) {
		inFlight <- struct{}{} // the last requests are done
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
