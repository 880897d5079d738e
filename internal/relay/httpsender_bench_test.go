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
	emu := emulatortest.Start(b)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials("hc1"),
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
		}),
	}, nil)
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
	h := http.Header{"Content-Type": {"application/json"}}
	b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 in flight
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := s.Do(ctx, http.MethodPost, "", nil, h, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	// CPU per request of the whole process (sender, emulator, listener):
	// unlike ns/op, it does not depend on what else the machine runs.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the process's user plus system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
