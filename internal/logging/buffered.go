package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Default sizes of a Buffered writer.
const (
	DefaultBufferSize    = 64 << 10
	DefaultFlushInterval = 200 * time.Millisecond
)

// Buffered is an io.Writer for log output that collects lines in memory
// and writes them to the underlying writer in batches: when Size bytes are
// waiting, every FlushInterval, on Flush and on Close. An access log line
// then costs a copy instead of a write syscall.
//
// A slog handler writes each record with one Write, so lines are never
// split or interleaved, and they reach the underlying writer in the order
// they were written. After Close, writes go straight through, so nothing
// logged during shutdown is lost; only a crash can lose what was logged in
// the last FlushInterval (NewLevelFlusher bounds that for warnings and
// errors). Buffered is safe for concurrent use.
type Buffered struct {
	// Static after construction.
	w    io.Writer
	size int
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the flush loop has returned

	// flushMu serializes writes to w, so batches keep their order.
	flushMu sync.Mutex

	// Guarded by mu.
	mu     sync.Mutex
	buf    []byte
	spare  []byte // the other half of the double buffer
	closed bool
	err    error // the last error from w, returned by Flush
}

// NewBuffered returns a Buffered writing to w, and starts its flush loop;
// Close stops it. size <= 0 and interval <= 0 mean the defaults.
func NewBuffered(w io.Writer, size int, interval time.Duration) *Buffered {
	if size <= 0 {
		size = DefaultBufferSize
	}
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	b := &Buffered{w: w, size: size, stop: make(chan struct{}), done: make(chan struct{}), buf: make([]byte, 0, size)}
	go b.flushLoop(interval)
	return b
}

func (b *Buffered) flushLoop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write copies p into the buffer, flushing first if p does not fit (a
// line larger than the buffer goes out whole with the next flush). After
// Close it writes p straight to the underlying writer.
func (b *Buffered) Write(p []byte) (int, error) {
	for flushed := false; ; flushed = true {
		b.mu.Lock()
		switch {
		case b.closed:
			b.mu.Unlock()
			b.flushMu.Lock()
			defer b.flushMu.Unlock()
			return b.w.Write(p)
		case len(b.buf)+len(p) <= b.size || flushed:
			b.buf = append(b.buf, p...)
			b.mu.Unlock()
			return len(p), nil
		}
		b.mu.Unlock()
		if err := b.Flush(); err != nil {
			return 0, err
		}
	}
}

// Flush writes what is buffered to the underlying writer. Writers are not
// held up while it writes: they fill the other half of the buffer.
func (b *Buffered) Flush() error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	var err error
	if len(out) > 0 {
		_, err = b.w.Write(out)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spare = out[:0]
	if err != nil {
		b.err = err
	}
	return err
}

// Close stops the flush loop and writes what is buffered; later writes
// go straight through, after it. It is idempotent and does not close the
// underlying writer.
func (b *Buffered) Close() error {
	first, err := b.closeAndFlush()
	if first {
		close(b.stop)
		<-b.done // the loop's last Flush finds nothing to write
	}
	return err
}

func (b *Buffered) closeAndFlush() (first bool, err error) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, nil
	}
	b.closed = true
	out := b.buf
	b.buf = nil
	b.mu.Unlock()
	if len(out) > 0 {
		_, err = b.w.Write(out)
	}
	return true, err
}

// levelFlusher is a slog.Handler that flushes a Buffered after each record
// at or above a level.
type levelFlusher struct {
	slog.Handler
	b     *Buffered
	level slog.Level
}

// NewLevelFlusher wraps h (which writes to b) so that records at level or
// above (warnings and errors, typically) are flushed at once: they reach
// the terminal immediately and survive a crash, while the access log stays
// buffered.
func NewLevelFlusher(h slog.Handler, b *Buffered, level slog.Level) slog.Handler {
	return &levelFlusher{Handler: h, b: b, level: level}
}

func (h *levelFlusher) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		if ferr := h.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h *levelFlusher) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelFlusher{Handler: h.Handler.WithAttrs(attrs), b: h.b, level: h.level}
}

func (h *levelFlusher) WithGroup(name string) slog.Handler {
	return &levelFlusher{Handler: h.Handler.WithGroup(name), b: h.b, level: h.level}
}
