//go:build unix

package relay_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// BenchmarkHTTPSenderEmulator is request mode end to end on loopback: an
// HTTPSender through the emulator to a Listener whose handler reads the
// body and answers 202, 100 B bodies, 64 requests in flight (the
// benchmark command's closed loop). It profiles the sender, the
// emulator's request path and the listener's request handling together.
func BenchmarkHTTPSenderEmulator(b *testing.B) {
	benchRequestMode(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}), "", http.StatusAccepted)
}

// benchRequestMode measures HTTPSender requests of 100 B to suffix, 64 in
// flight, through an emulator to a listener that serves them with h and
// answers want, and reports the process's CPU per request.
func benchRequestMode(b *testing.B, h http.Handler, suffix string, want int) {
	emu := emulatortest.Start(b)
	startBenchListener(b, relay.ListenerConfig{Credentials: emu.ListenerCredentials("hc1"), HTTPHandler: h})
	s := &relay.HTTPSender{Credentials: emu.Credentials("hc1")}
	body := bytes.Repeat([]byte("a"), 100)
	hdr := http.Header{"Content-Type": {"application/json"}}
	b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 in flight
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := s.Do(b.Context(), http.MethodPost, suffix, nil, hdr, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Errorf("status %d, want %d", resp.StatusCode, want)
				return
			}
		}
	})
	b.StopTimer()
	// CPU per request of the whole process (sender, emulator, listener):
	// unlike ns/op, it does not depend on what else the machine runs.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// startBenchListener runs a listener with cfg until the benchmark ends,
// once its control channel is up.
func startBenchListener(b *testing.B, cfg relay.ListenerConfig) {
	l, err := relay.NewListener(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		l.Close()
		<-done
	})
	if err := l.WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
}

// processCPU is the process's user plus system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
