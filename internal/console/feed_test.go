package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestFeedStreamsEventsAndReplaysHistory(t *testing.T) {
	f := NewFeed(FeedConfig{}, discard())
	url := serveFeed(t, f, 30*time.Second)

	f.Publish(Event{Kind: KindMessage, Conn: "c1", Type: "text", Data: []byte(`{"id":"a","message":"before"}`)})
	s := openFeed(t, url, "")
	id1, w := s.nextMessage() // replayed
	if w.Kind != KindMessage || w.Conn != "c1" || w.Type != "text" || w.Data != `{"id":"a","message":"before"}` ||
		w.Encoding != "utf-8" || w.Bytes != 29 || w.Truncated {
		t.Errorf("replayed %+v", w)
	}
	if _, err := time.Parse(time.RFC3339Nano, w.Time); err != nil {
		t.Errorf("time %q: %v", w.Time, err)
	}

	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("line one\nline two")})
	f.Publish(Event{Kind: KindRequest, Type: "binary", Method: "POST", ContentType: "application/octet-stream", Data: []byte{0xff, 0}})
	id2, w := s.nextMessage()
	if w.Data != "line one\nline two" {
		t.Errorf("multi-line data %q", w.Data)
	}
	id3, w := s.nextMessage()
	if w.Kind != KindRequest || w.Method != "POST" || w.ContentType != "application/octet-stream" || w.Encoding != "base64" || w.Data != "/wA=" {
		t.Errorf("binary request %+v", w)
	}
	if id1 == id2 || id2 == id3 {
		t.Errorf("ids not unique: %s %s %s", id1, id2, id3)
	}

	// Resuming from id1 replays exactly the two later events, no gap.
	r := openFeed(t, url, id1)
	if got, _ := r.nextMessage(); got != id2 {
		t.Errorf("resume: first id %s, want %s", got, id2)
	}
	if got, _ := r.nextMessage(); got != id3 {
		t.Errorf("resume: second id %s, want %s", got, id3)
	}
	// A stale or foreign id replays everything.
	for _, last := range []string{"00000000-2", "garbage", id1 + "0", ""} {
		r := openFeed(t, url, last)
		if got, _ := r.nextMessage(); got != id1 {
			t.Errorf("Last-Event-ID %q: first id %s, want %s", last, got, id1)
		}
	}
}

func TestFeedReportsGapWhenHistoryIsGone(t *testing.T) {
	f := NewFeed(FeedConfig{History: 2}, discard())
	url := serveFeed(t, f, 30*time.Second)
	for i := range 5 {
		f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte(strconv.Itoa(i))})
	}
	s := openFeed(t, url, f.boot+"-1")
	if e := s.nextEvent(); e.event != "gap" {
		t.Fatalf("event %q, want gap", e.event)
	}
	for _, want := range []string{"3", "4"} {
		if _, w := s.nextMessage(); w.Data != want {
			t.Errorf("data %q, want %q", w.Data, want)
		}
	}
	// Up to date: no gap, nothing replayed, then live events.
	s = openFeed(t, url, f.boot+"-5")
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("live")})
	if _, w := s.nextMessage(); w.Data != "live" {
		t.Errorf("data %q, want live", w.Data)
	}
}

// TestFeedOutlivesServerTimeouts runs the stream on a server whose
// ReadTimeout and WriteTimeout are far shorter than the stream: it must
// keep going (heartbeats, then an event) well past both.
func TestFeedOutlivesServerTimeouts(t *testing.T) {
	const timeout = 150 * time.Millisecond
	f := NewFeed(FeedConfig{Heartbeat: 25 * time.Millisecond, WriteTimeout: time.Second}, discard())
	url := serveFeed(t, f, timeout)
	s := openFeed(t, url, "")
	start := time.Now()
	beats := 0
	for time.Since(start) < 4*timeout {
		e, err := s.next()
		if err != nil {
			t.Fatalf("stream ended after %v and %d heartbeats: %v", time.Since(start), beats, err)
		}
		if e.comment == "keepalive" {
			beats++
		}
	}
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("still here")})
	for {
		e := s.nextEvent()
		if e.event == "message" {
			if !strings.Contains(e.data, "still here") {
				t.Errorf("data %s", e.data)
			}
			break
		}
	}
	if beats < 3 {
		t.Errorf("%d heartbeats in %v", beats, 4*timeout)
	}
}

// TestFeedEndsOnShutdown: http.Server.Shutdown waits for handlers, so the
// feed must end its streams when Shutdown starts (RegisterOnShutdown).
func TestFeedEndsOnShutdown(t *testing.T) {
	f := NewFeed(FeedConfig{}, discard())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(f.Close)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	streams := []*sseStream{openFeed(t, url, ""), openFeed(t, url, "")}
	for _, s := range streams {
		if e, err := s.next(); err != nil || e.retry == "" {
			t.Fatalf("first block %+v, %v; want the retry hint", e, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (streams kept it waiting)", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	for _, s := range streams {
		if e := s.nextEvent(); e.event != "shutdown" {
			t.Errorf("event %q, want shutdown", e.event)
		}
		if _, err := s.next(); err != io.EOF {
			t.Errorf("after shutdown: %v, want EOF", err)
		}
	}
	// Publishing after Close does nothing; a late subscriber is told at once.
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("late")})
	_, replay, _, full := f.subscribe("")
	if replay != nil || full {
		t.Errorf("subscribe after Close: replay %v, full %v", replay, full)
	}
}

func TestFeedDisconnectsSlowSubscriber(t *testing.T) {
	f := NewFeed(FeedConfig{Buffer: 2}, discard())
	slow, _, _, _ := f.subscribe("")
	fast, _, _, _ := f.subscribe("")
	for i := range 3 {
		f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte(strconv.Itoa(i))})
		if i < 2 {
			<-fast.ch // fast keeps up
		}
	}
	select {
	case <-slow.kicked:
	default:
		t.Fatal("slow subscriber not disconnected")
	}
	select {
	case <-fast.kicked:
		t.Fatal("fast subscriber disconnected")
	default:
	}
	if got := f.Dropped(); got != 1 {
		t.Errorf("Dropped %d, want 1", got)
	}
	f.mu.Lock()
	n := len(f.subs)
	f.mu.Unlock()
	if n != 1 {
		t.Errorf("%d subscribers left, want 1", n)
	}
}

func TestFeedLimitsSubscribers(t *testing.T) {
	f := NewFeed(FeedConfig{MaxSubscribers: 1}, discard())
	url := serveFeed(t, f, 30*time.Second)
	first := openFeed(t, url, "")
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("x")})
	first.nextMessage() // subscribed for sure
	second := openFeed(t, url, "")
	if e := second.nextEvent(); e.event != "error" || !strings.Contains(e.data, "too many") {
		t.Errorf("second stream: %+v, want a too-many error", e)
	}
	if _, err := second.next(); err != io.EOF {
		t.Errorf("second stream not ended: %v", err)
	}
}

func TestFeedConcurrentPublishers(t *testing.T) {
	f := NewFeed(FeedConfig{Buffer: 1000, History: 1000}, discard())
	url := serveFeed(t, f, 30*time.Second)
	s := openFeed(t, url, f.boot+"-0")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte(strconv.Itoa(g*100 + i))})
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for range 200 {
		_, w := s.nextMessage()
		if seen[w.Data] {
			t.Fatalf("duplicate %s", w.Data)
		}
		seen[w.Data] = true
	}
}

func TestPreview(t *testing.T) {
	long := strings.Repeat("é", 10) // 20 bytes
	tests := []struct {
		name      string
		data      []byte
		binary    bool
		limit     int
		want, enc string
		truncated bool
	}{
		{"text", []byte("hello"), false, 16, "hello", "utf-8", false},
		{"empty", nil, false, 16, "", "utf-8", false},
		{"cut on a rune boundary", []byte(long), false, 5, "éé", "utf-8", true},
		{"binary", []byte("hello"), true, 16, "aGVsbG8=", "base64", false},
		{"invalid utf-8", []byte{'a', 0xff}, false, 16, "Yf8=", "base64", false},
		{"binary cut", []byte{1, 2, 3, 4}, true, 2, "AQI=", "base64", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, enc, tr := preview(tt.data, tt.binary, tt.limit)
			if got != tt.want || enc != tt.enc || tr != tt.truncated {
				t.Errorf("got %q %s %v, want %q %s %v", got, enc, tr, tt.want, tt.enc, tt.truncated)
			}
		})
	}
}

func TestPublishCopiesAndCaps(t *testing.T) {
	f := NewFeed(FeedConfig{MaxPreview: 8}, discard())
	data := []byte("0123456789")
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: data})
	copy(data, "XXXXXXXXXX") // the caller reuses its buffer
	var w wireEvent
	if err := json.Unmarshal(f.ring[0].data, &w); err != nil {
		t.Fatal(err)
	}
	if w.Data != "01234567" || !w.Truncated || w.Bytes != 10 {
		t.Errorf("got %+v", w)
	}
}

func TestNilFeedIsInert(t *testing.T) {
	var f *Feed
	f.Publish(Event{Kind: KindMessage, Data: []byte("x")})
	f.Close()
}

// TestFeedNeverLogsPayloads: the feed logs subscriptions, never content.
func TestFeedNeverLogsPayloads(t *testing.T) {
	log, logs := testlog.New(t)
	f := NewFeed(FeedConfig{Buffer: 1, MaxSubscribers: 1}, log)
	url := serveFeed(t, f, 30*time.Second)
	s := openFeed(t, url, "")
	f.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("SECRET-PAYLOAD")})
	s.nextMessage()
	openFeed(t, url, "").nextEvent() // too many: logged
	if strings.Contains(logs.String(), "SECRET-PAYLOAD") {
		t.Errorf("payload in logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "too many subscribers") {
		t.Errorf("rejection not logged:\n%s", logs.String())
	}
}

// FuzzParseID: Last-Event-ID comes from the network. Parsing never
// panics, and accepts only ids this feed could have issued.
func FuzzParseID(f *testing.F) {
	feed := NewFeed(FeedConfig{History: 4}, discard())
	for range 3 {
		feed.Publish(Event{Kind: KindMessage, Type: "text", Data: []byte("x")})
	}
	f.Add(feed.boot + "-2")
	f.Add(feed.boot + "-99")
	f.Add(feed.boot + "--1")
	f.Add("deadbeef-1")
	f.Add("")
	f.Add("-")
	f.Add(feed.boot + "-18446744073709551616")
	f.Fuzz(func(t *testing.T, id string) {
		n, ok := feed.parseID(id)
		if ok && (n > 3 || !strings.HasPrefix(id, feed.boot+"-")) {
			t.Errorf("accepted %q as %d", id, n)
		}
		s, replay, _, _ := feed.subscribe(id)
		if s == nil {
			t.Fatal("no subscriber")
		}
		feed.unsubscribe(s)
		want := 3
		if ok {
			want = 3 - int(n)
		}
		if len(replay) != want {
			t.Errorf("%q: replay %d, want %d", id, len(replay), want)
		}
	})
}
