//go:build unix

package relay_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/relay"
)

// BenchmarkListenerPrintEmulator is BenchmarkHTTPSenderEmulator with
// cmd/listener's print-mode handler (lines to io.Discard, no logging): the
// listener answers every request with a receipt body, as in the benchmark
// command's request-mode runs.
func BenchmarkListenerPrintEmulator(b *testing.B) {
	emu := emulatortest.Start(b)
	h, err := forward.New(forward.Config{}, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	l, err := relay.NewListener(relay.ListenerConfig{Credentials: emu.ListenerCredentials("hc1"), HTTPHandler: h}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	defer l.Close()
	if err := l.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	s := &relay.HTTPSender{Credentials: emu.Credentials("hc1")}
	body := bytes.Repeat([]byte("a"), 100)
	hdr := http.Header{"Content-Type": {"application/json"}}
	b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 in flight
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := s.Do(ctx, http.MethodPost, "messages", nil, hdr, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
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
