package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// fastHandler writes the records that make up nearly all of a busy
// gateway's log (the access line: short ASCII strings, integers and
// durations) itself, byte for byte as slog's TextHandler or JSONHandler
// would, about three times faster; any other record (a string that needs
// quoting beyond plain ASCII, a float, a time, a group, an error value, …)
// goes to the standard handler. FuzzFastHandler checks the two agree on
// every record.
type fastHandler struct {
	std    slog.Handler // the standard handler, with the same attrs
	json   bool
	level  slog.Leveler
	w      io.Writer // whole lines, one Write each (see lockedWriter)
	prefix []byte    // the WithAttrs attrs, encoded (while fast)
	fast   bool      // false once an attr needs the standard handler
}

// newFastHandler returns a handler for w (text or JSON) at level.
func newFastHandler(w io.Writer, level slog.Leveler, json bool) *fastHandler {
	if _, ok := w.(*Buffered); !ok {
		w = &lockedWriter{w: w} // Buffered serialises its writes itself
	}
	opts := &slog.HandlerOptions{Level: level}
	var std slog.Handler = slog.NewTextHandler(w, opts)
	if json {
		std = slog.NewJSONHandler(w, opts)
	}
	return &fastHandler{std: std, json: json, level: level, w: w, fast: true}
}

// lockedWriter makes each Write whole with respect to the others, so the
// fast path's lines and the standard handler's never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (h *fastHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *fastHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.std = h.std.WithAttrs(as)
	if h.fast {
		p, ok := h.appendAttrs(append([]byte(nil), h.prefix...), as)
		h2.prefix, h2.fast = p, ok
	}
	return &h2
}

func (h *fastHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.std.WithGroup(name) // groups are rare: the standard handler
}

var fastBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *fastHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.std.Handle(ctx, r)
	}
	bp := fastBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 16<<10 {
			fastBufs.Put(bp)
		}
	}()
	b, ok := h.appendRecord((*bp)[:0], r)
	*bp = b
	if !ok {
		return h.std.Handle(ctx, r)
	}
	_, err := h.w.Write(b)
	return err
}

// appendRecord encodes r, or reports false if it needs the standard
// handler.
func (h *fastHandler) appendRecord(b []byte, r slog.Record) ([]byte, bool) {
	if h.json {
		b = append(b, '{')
	}
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if h.json {
			if y := t.Year(); y < 0 || y >= 10000 {
				return b, false
			}
			b = append(b, `"time":"`...)
			b = t.AppendFormat(b, time.RFC3339Nano)
			b = append(b, `",`...)
		} else {
			b = append(b, "time="...)
			b = appendRFC3339Millis(b, t)
			b = append(b, ' ')
		}
	}
	if h.json {
		b = append(b, `"level":"`...)
		b = append(b, r.Level.String()...)
		b = append(b, `","msg":`...)
	} else {
		b = append(b, "level="...)
		b = append(b, r.Level.String()...)
		b = append(b, " msg="...)
	}
	b, ok := h.appendString(b, r.Message)
	if !ok {
		return b, false
	}
	b = append(b, h.prefix...)
	r.Attrs(func(a slog.Attr) bool {
		b, ok = h.appendAttr(b, a)
		return ok
	})
	if !ok {
		return b, false
	}
	if h.json {
		b = append(b, '}')
	}
	return append(b, '\n'), true
}

// appendAttrs encodes as as they follow the message.
func (h *fastHandler) appendAttrs(b []byte, as []slog.Attr) ([]byte, bool) {
	ok := true
	for _, a := range as {
		if b, ok = h.appendAttr(b, a); !ok {
			break
		}
	}
	return b, ok
}

// appendAttr encodes a, preceded by its separator, if it is a string,
// integer, bool or duration with a plain key.
func (h *fastHandler) appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" || !plain(a.Key) {
		return b, false
	}
	v := a.Value
	if h.json {
		b = append(b, ',', '"')
		b = append(b, a.Key...)
		b = append(b, '"', ':')
	} else {
		b = append(b, ' ')
		b = append(b, a.Key...)
		b = append(b, '=')
	}
	switch v.Kind() {
	case slog.KindString:
		return h.appendString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10), true
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool()), true
	case slog.KindDuration:
		if h.json {
			return strconv.AppendInt(b, int64(v.Duration()), 10), true
		}
		return append(b, v.Duration().String()...), true
	}
	return b, false
}

// appendString encodes s if it is printable ASCII without a quote or a
// backslash: as is, or between quotes where the text format needs them
// (empty, a space or '='), always between quotes in JSON.
func (h *fastHandler) appendString(b []byte, s string) ([]byte, bool) {
	quote := h.json || s == ""
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '=':
			quote = true
		case escapes(c):
			return b, false
		}
	}
	if !quote {
		return append(b, s...), true
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// plain reports whether s needs no quoting in either format.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '=' || escapes(c) {
			return false
		}
	}
	return true
}

// escapes reports whether c is a byte the fast path leaves to slog: not
// printable ASCII (space aside), a quote or a backslash.
func escapes(c byte) bool { return c < 0x20 || c > 0x7e || c == '"' || c == '\\' }

// appendRFC3339Millis is the text handler's time format: RFC 3339 with
// exactly three digits of milliseconds (truncated).
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}
