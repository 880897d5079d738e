package console

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// sseEvent is one parsed server-sent event; comment lines are kept in
// comment (heartbeats).
type sseEvent struct {
	id, event, data, comment, retry string
}

// sseStream reads events from one GET of the feed.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// openFeed GETs url as a stream; every read ends by the test's deadline.
func openFeed(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event or comment block; io.EOF when the server
// ended the stream.
func (s *sseStream) next() (sseEvent, error) {
	var e sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return e, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if e != (sseEvent{}) {
				return e, nil
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			e.comment = value
		case "id":
			e.id = value
		case "event":
			e.event = value
		case "data":
			e.data = value
		case "retry":
			if _, err := strconv.Atoi(value); err != nil {
				s.t.Errorf("retry %q", value)
			}
			e.retry = value
		default:
			s.t.Errorf("unknown field in %q", line)
		}
	}
}

// nextEvent skips comments and retry lines.
func (s *sseStream) nextEvent() sseEvent {
	s.t.Helper()
	for {
		e, err := s.next()
		if err != nil {
			s.t.Fatalf("reading the stream: %v", err)
		}
		if e.event != "" {
			return e
		}
	}
}

func (s *sseStream) nextMessage() (string, wireEvent) {
	s.t.Helper()
	e := s.nextEvent()
	if e.event != "message" {
		s.t.Fatalf("event %q (%s), want message", e.event, e.data)
	}
	var w wireEvent
	if err := json.Unmarshal([]byte(e.data), &w); err != nil {
		s.t.Fatalf("data %q: %v", e.data, err)
	}
	return e.id, w
}

// serveFeed serves f on a real http.Server on 127.0.0.1:0 with the given
// timeouts, and shuts it down at the end of the test.
func serveFeed(t *testing.T, f *Feed, timeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadTimeout: timeout, WriteTimeout: timeout, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(f.Close)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + PathEvents
}
