package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/relay"
)

// benchBody is a POST /messages JSON body with a message of n bytes.
func benchBody(n int) []byte {
	return []byte(`{"message":"` + strings.Repeat("a", n) + `","id":"msg-1"}`)
}

// discardWriter is a reusable http.ResponseWriter that drops the body, so
// that allocation counts measure the handler rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
}

// BenchmarkDecodeSendRequest measures parsing a POST /messages JSON body:
// the strict scanner, json.Valid on the message and the id check.
func BenchmarkDecodeSendRequest(b *testing.B) {
	for _, n := range []int{100, 4 << 10, 64 << 10} {
		b.Run(sizeLabel(n), func(b *testing.B) {
			body := benchBody(n)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var it sendItem
				if err := parseSend(body, &it); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// rewindBody is a request body the benchmark rewinds instead of
// allocating a new one per iteration (net/http's own body is per request
// and not counted here either).
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// nopRelayer accepts every message without sending it.
type nopRelayer struct{}

func (nopRelayer) Send(context.Context, relay.Message) error { return nil }

// BenchmarkHandleSend measures POST /messages through the whole router and
// middleware (request id, request log at info level into io.Discard,
// recoverer, CORS, auth) with a Relayer that returns at once: the
// gateway's per-request HTTP cost without the network.
func BenchmarkHandleSend(b *testing.B) {
	for _, n := range []int{100, 4 << 10, 64 << 10} {
		b.Run(sizeLabel(n), func(b *testing.B) {
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			h := New(Config{}, nopRelayer{}, nil, log, nil).Handler()
			body := benchBody(n)
			br := &rewindBody{}
			r := httptest.NewRequest(http.MethodPost, "/messages", nil)
			r.Host = "localhost" // the Host check answers 421 to httptest's example.com
			r.Header.Set("Content-Type", "application/json")
			r.Body = br
			r.ContentLength = int64(len(body)) // as net/http sets it from the header
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				br.Reset(body)
				w.reset()
				h.ServeHTTP(w, r)
				if w.status != http.StatusAccepted {
					b.Fatalf("status %d, want 202", w.status)
				}
			}
		})
	}
}

func sizeLabel(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
