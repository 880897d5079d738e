package logging_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/logging"
)

// BenchmarkAccessLine measures one access-log line (the gateway's eight
// attributes) written to a file directly (a write syscall per line) and
// through Buffered.
func BenchmarkAccessLine(b *testing.B) {
	for _, mode := range []string{"direct", "buffered"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var w io.Writer = f
			if mode == "buffered" {
				bw := logging.NewBuffered(f, 0, 0)
				defer bw.Close()
				w = bw
			}
			log := slog.New(slog.NewTextHandler(w, nil))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					log.LogAttrs(b.Context(), slog.LevelInfo, "http request",
						slog.String("request_id", "0b9c2a1e-8f1e-4c4b-9d1e-2f6a8b7c5d4e"), slog.String("method", "POST"),
						slog.String("path", "/messages"), slog.String("route", "/messages"), slog.Int("status", 202),
						slog.Int("bytes", 60), slog.Duration("duration", 48*time.Microsecond), slog.String("remote", "127.0.0.1:50000"))
				}
			})
		})
	}
}
