package console

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Feed defaults (FeedConfig zero values).
const (
	defaultHistory        = 100
	defaultMaxPreview     = 16 << 10
	defaultBuffer         = 64
	defaultMaxSubscribers = 16
	defaultHeartbeat      = 15 * time.Second
	defaultWriteTimeout   = 10 * time.Second
	defaultRetry          = 2 * time.Second
)

// FeedConfig tunes a Feed. Zero fields take the defaults.
type FeedConfig struct {
	// History is how many recent events are kept and replayed to a new
	// subscriber (and to a reconnecting one from its Last-Event-ID). Default 100.
	History int
	// MaxPreview is how many bytes of each payload are kept; the rest is cut
	// and the event marked truncated. Default 16 KiB.
	MaxPreview int
	// Buffer is each subscriber's queue. A subscriber whose queue is full is
	// disconnected (it reconnects and catches up from History). Default 64.
	Buffer int
	// MaxSubscribers caps concurrent streams; the next one gets an "error"
	// event and is closed. Default 16.
	MaxSubscribers int
	// Heartbeat is the interval of the ": keepalive" comments that keep
	// proxies from closing an idle stream and detect dead clients. Default 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a subscriber. The stream extends
	// its own write deadline before every write (http.ResponseController),
	// so the http.Server's WriteTimeout does not cut it. Default 10s.
	WriteTimeout time.Duration
	// Retry is the reconnection delay hint sent to clients. Default 2s.
	Retry time.Duration
}

func (c *FeedConfig) setDefaults() {
	if c.History <= 0 {
		c.History = defaultHistory
	}
	if c.MaxPreview <= 0 {
		c.MaxPreview = defaultMaxPreview
	}
	if c.Buffer <= 0 {
		c.Buffer = defaultBuffer
	}
	if c.MaxSubscribers <= 0 {
		c.MaxSubscribers = defaultMaxSubscribers
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = defaultHeartbeat
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.Retry <= 0 {
		c.Retry = defaultRetry
	}
}

// Event kinds.
const (
	KindMessage = "message" // a WebSocket frame the listener read
	KindRequest = "request" // an HTTP request relayed to the listener (?delivery=request)
)

// Event is one thing the gateway's built-in listener received.
type Event struct {
	Kind        string // KindMessage or KindRequest
	Conn        string // relay connection id, if known
	Type        string // "text" or "binary"
	Method      string // KindRequest only
	ContentType string // KindRequest only
	// Data is the payload. Publish keeps at most MaxPreview bytes of it and
	// does not retain the slice.
	Data []byte
}

// wireEvent is the JSON in each SSE "data:" line.
type wireEvent struct {
	Time        string `json:"time"`
	Kind        string `json:"kind"`
	Conn        string `json:"conn,omitempty"`
	Type        string `json:"type"`
	Method      string `json:"method,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	Bytes       int    `json:"bytes"`
	Data        string `json:"data"`
	Encoding    string `json:"encoding"` // "utf-8" or "base64"
	Truncated   bool   `json:"truncated"`
}

type item struct {
	seq  uint64
	data []byte // JSON of a wireEvent
}

// subscriber is one open stream. ch is written only by Publish under
// Feed.mu; kicked is closed (once, under Feed.mu) when ch overflowed.
type subscriber struct {
	ch     chan item
	kicked chan struct{}
}

// Feed broadcasts what the built-in listener receives to browsers as
// server-sent events (GET /console/events). Publish never blocks: each
// subscriber has a bounded queue and is disconnected when it falls behind;
// a reconnecting client sends Last-Event-ID and gets what it missed from
// the recent history. Close ends every stream (call it when the HTTP
// server starts shutting down, since Shutdown does not interrupt
// handlers). All methods are safe for concurrent use, and on a nil *Feed
// Publish and Close do nothing.
//
// The feed never logs payloads; it carries exactly what senders posted,
// which never includes the relay key.
type Feed struct {
	// Static after construction.
	cfg  FeedConfig
	log  *slog.Logger
	boot string // instance id: event ids are "<boot>-<seq>"
	done chan struct{}

	closeOnce sync.Once
	dropped   atomic.Uint64 // subscribers disconnected for falling behind

	// Guarded by mu.
	mu     sync.Mutex
	closed bool
	seq    uint64
	ring   []item // oldest first, at most cfg.History
	subs   map[*subscriber]struct{}
}

// NewFeed returns an open Feed.
func NewFeed(cfg FeedConfig, log *slog.Logger) *Feed {
	cfg.setDefaults()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Feed{
		cfg:  cfg,
		log:  log,
		boot: hex.EncodeToString(b),
		done: make(chan struct{}),
		subs: map[*subscriber]struct{}{},
	}
}

// Publish records e and sends it to every subscriber without blocking.
// After Close it does nothing.
func (f *Feed) Publish(e Event) {
	if f == nil {
		return
	}
	w := wireEvent{
		Time: time.Now().UTC().Format(time.RFC3339Nano), Kind: e.Kind, Conn: e.Conn, Type: e.Type,
		Method: e.Method, ContentType: e.ContentType, Bytes: len(e.Data),
	}
	w.Data, w.Encoding, w.Truncated = preview(e.Data, e.Type == "binary", f.cfg.MaxPreview)
	data, err := json.Marshal(w)
	if err != nil { // strings and ints only: cannot happen
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.seq++
	it := item{seq: f.seq, data: data}
	if len(f.ring) == f.cfg.History {
		copy(f.ring, f.ring[1:])
		f.ring[len(f.ring)-1] = it
	} else {
		f.ring = append(f.ring, it)
	}
	for s := range f.subs {
		select {
		case s.ch <- it:
		default:
			// Too slow: drop the stream rather than block the listener or
			// grow a queue; the client reconnects and replays from ring.
			close(s.kicked)
			delete(f.subs, s)
			f.dropped.Add(1)
		}
	}
}

// Close ends every stream with a "shutdown" event and makes later
// subscribers get one at once. It is idempotent and does not wait.
func (f *Feed) Close() {
	if f == nil {
		return
	}
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		close(f.done)
	})
}

// Dropped reports how many streams were disconnected for falling behind.
func (f *Feed) Dropped() uint64 { return f.dropped.Load() }

// preview returns data (at most limit bytes of it) as UTF-8 text, or as
// base64 when it is binary or not valid UTF-8, and whether it was cut.
func preview(data []byte, binary bool, limit int) (string, string, bool) {
	cut := data
	if len(cut) > limit {
		cut = cut[:limit]
		for i := 0; i < utf8.UTFMax-1 && !binary && !utf8.Valid(cut) && len(cut) > 0; i++ {
			cut = cut[:len(cut)-1] // do not split a rune
		}
	}
	truncated := len(cut) < len(data)
	if binary || !utf8.Valid(cut) {
		return base64.StdEncoding.EncodeToString(cut), "base64", truncated
	}
	return string(cut), "utf-8", truncated
}

// subscribe registers a stream and returns what it must replay first:
// the events after lastID if it names this feed's instance, else all of
// the history. gap is set when events after lastID were already dropped
// from the history. ok is false when the feed is closed or full.
func (f *Feed) subscribe(lastID string) (s *subscriber, replay []item, gap, full bool) {
	after, resume := f.parseID(lastID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, false, false
	}
	if len(f.subs) >= f.cfg.MaxSubscribers {
		return nil, nil, false, true
	}
	for _, it := range f.ring {
		if !resume || it.seq > after {
			replay = append(replay, it)
		}
	}
	if resume && after < f.seq {
		oldest := f.seq + 1 // when the ring is empty
		if len(f.ring) > 0 {
			oldest = f.ring[0].seq
		}
		gap = after+1 < oldest
	}
	s = &subscriber{ch: make(chan item, f.cfg.Buffer), kicked: make(chan struct{})}
	f.subs[s] = struct{}{}
	return s, replay, gap, false
}

func (f *Feed) unsubscribe(s *subscriber) {
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
}

// parseID reads a Last-Event-ID of this instance; anything else (absent,
// malformed, or from before a restart) means "replay everything".
func (f *Feed) parseID(id string) (uint64, bool) {
	boot, seq, ok := strings.Cut(id, "-")
	if !ok || boot != f.boot {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n > f.seq {
		return 0, false // from the future: not ours
	}
	return n, true
}

// ServeHTTP handles "GET /console/events": a text/event-stream of events
// ("message" events whose data is one JSON object, "gap", "shutdown" and
// "error"), with heartbeats, until the client goes away, the stream falls
// behind, or the feed closes. Authentication is the router's job (the
// console sends the API key as a header through fetch streaming, so the
// key never goes in a URL).
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The stream outlives the server's WriteTimeout: the write deadline is
	// extended before each write (sseWriter.write). The read deadline is
	// cleared too, though net/http already clears it while it watches a
	// body-less request's connection for the client going away.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream

	sw := &sseWriter{w: w, rc: rc, timeout: f.cfg.WriteTimeout}
	sub, replay, gap, full := f.subscribe(r.Header.Get("Last-Event-ID"))
	w.WriteHeader(http.StatusOK)
	sw.printf("retry: %d\n\n", f.cfg.Retry.Milliseconds())
	switch {
	case full:
		// A 200 with an error event rather than a status the browser would
		// show as a failed fetch: the console reports it and retries later.
		f.log.Warn("console feed: too many subscribers", "max", f.cfg.MaxSubscribers)
		sw.printf("event: error\ndata: {\"detail\":\"too many open console feeds; retrying later\"}\n\n")
		sw.flush()
		return
	case sub == nil:
		sw.printf("event: shutdown\ndata: {}\n\n")
		sw.flush()
		return
	}
	defer f.unsubscribe(sub)
	f.log.Debug("console feed: subscribed", "replay", len(replay))
	if gap {
		sw.printf("event: gap\ndata: {}\n\n")
	}
	for _, it := range replay {
		sw.event(f.boot, it)
	}
	if sw.flush() {
		f.stream(r, sw, sub)
	}
}

// stream writes sub's events as they come, with a keepalive comment every
// Heartbeat, until the client goes away, the subscriber is kicked for being
// too slow, a write fails or the feed shuts down.
func (f *Feed) stream(r *http.Request, sw *sseWriter, sub *subscriber) {
	hb := time.NewTicker(f.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case it := <-sub.ch:
			sw.event(f.boot, it)
			// Send whatever else is queued in the same flush.
			for more := true; more; {
				select {
				case it := <-sub.ch:
					sw.event(f.boot, it)
				default:
					more = false
				}
			}
		case <-hb.C:
			sw.printf(": keepalive\n\n")
		case <-sub.kicked:
			f.log.Warn("console feed: subscriber too slow, disconnected")
			return
		case <-f.done:
			sw.printf("event: shutdown\ndata: {}\n\n")
			sw.flush()
			return
		case <-r.Context().Done():
			return
		}
		if !sw.flush() {
			return
		}
	}
}

// sseWriter writes one stream; it remembers the first error and then
// writes nothing more. Owned by one handler goroutine.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

func (s *sseWriter) write(p []byte) {
	if s.err != nil {
		return
	}
	// ErrNotSupported: a writer without deadlines (tests); write anyway.
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return
	}
	_, s.err = s.w.Write(p)
}

func (s *sseWriter) printf(format string, args ...any) {
	s.write(fmt.Appendf(nil, format, args...))
}

func (s *sseWriter) event(boot string, it item) {
	b := make([]byte, 0, len(it.data)+64)
	b = fmt.Appendf(b, "id: %s-%d\nevent: message\ndata: ", boot, it.seq)
	b = append(b, it.data...) // one line: json.Marshal escapes newlines
	b = append(b, "\n\n"...)
	s.write(b)
}

// flush sends what was written; false means the stream is broken.
func (s *sseWriter) flush() bool {
	if s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err == nil
}
