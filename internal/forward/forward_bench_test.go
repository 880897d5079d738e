package forward

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// discardResponse is a reusable http.ResponseWriter that keeps nothing.
type discardResponse struct{ h http.Header }

func (w *discardResponse) Header() http.Header         { return w.h }
func (w *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardResponse) WriteHeader(int)             {}

// BenchmarkServeHTTPPrint is print mode's share of a relayed request: a
// 100 B JSON body printed as a line and answered with a receipt.
func BenchmarkServeHTTPPrint(b *testing.B) {
	h, err := New(Config{}, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"id":"` + strings.Repeat("7", 36) + `","message":"` + strings.Repeat("m", 60) + `"}`)[:100]
	r, err := http.NewRequest(http.MethodPost, "/hc1/messages", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	w := &discardResponse{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkPrintLine is one printed WebSocket message line.
func BenchmarkPrintLine(b *testing.B) {
	h, err := New(Config{}, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	text := `{"id":"` + strings.Repeat("7", 36) + `","message":"<b>hi</b> & more"}`
	now := time.Date(2026, 11, 30, 9, 1, 2, 345678900, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		h.print(&Line{Time: now, Connection: "c1", Type: "text", Text: &text})
	}
}
