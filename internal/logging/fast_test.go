package logging

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"
)

// both logs the same records through the fast handler and slog's own
// handler of the same format, with the same WithAttrs, and fails on the
// first line that differs.
func both(t *testing.T, json bool, with []slog.Attr, do func(*slog.Logger)) {
	t.Helper()
	var fb, sb bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	var std slog.Handler = slog.NewTextHandler(&sb, opts)
	if json {
		std = slog.NewJSONHandler(&sb, opts)
	}
	fast := slog.New(newFastHandler(&fb, slog.LevelDebug, json)).With(attrsAny(with)...)
	do(fast)
	do(slog.New(std).With(attrsAny(with)...))
	if fb.String() != sb.String() {
		t.Fatalf("json=%v:\nfast: %q\nslog: %q", json, fb.String(), sb.String())
	}
}

func attrsAny(as []slog.Attr) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

// record logs one record with a fixed time (slog.Logger stamps time.Now).
func record(l *slog.Logger, tm time.Time, level slog.Level, msg string, as ...slog.Attr) {
	r := slog.NewRecord(tm, level, msg, 0)
	r.AddAttrs(as...)
	if l.Handler().Enabled(context.Background(), level) {
		_ = l.Handler().Handle(context.Background(), r)
	}
}

func TestFastHandlerMatchesSlog(t *testing.T) {
	t.Parallel()
	tm := time.Date(2026, 11, 30, 6, 20, 1, 123456789, time.UTC)
	access := []slog.Attr{
		slog.String("request_id", "0b9c2a1e-8f1e-4c4b-9d1e-2f6a8b7c5d4e"), slog.String("method", "POST"),
		slog.String("path", "/messages"), slog.String("route", "/messages"), slog.Int("status", 202),
		slog.Int("bytes", 60), slog.Duration("duration", 48*time.Microsecond), slog.String("remote", "127.0.0.1:50000"),
	}
	cases := []struct {
		name string
		with []slog.Attr
		msg  string
		as   []slog.Attr
	}{
		{"access line", []slog.Attr{slog.String("component", "api")}, "http request", access},
		{"no attrs", nil, "ready", nil},
		{"empty message and value", nil, "", []slog.Attr{slog.String("k", "")}},
		{"quoting", nil, "a=b", []slog.Attr{slog.String("s", "x y"), slog.String("eq", "a=b")}},
		{"needs slog: unicode, quote, backslash, newline", nil, "héllo", []slog.Attr{slog.String("q", `say "hi"`), slog.String("bs", `a\b`), slog.String("nl", "a\nb")}},
		{"needs slog: error, float, time, group, any", nil, "m", []slog.Attr{slog.Any("err", errors.New("boom")), slog.Float64("f", 1.5),
			slog.Time("t", tm), slog.Group("g", slog.Int("a", 1)), slog.Any("list", []int{1, 2})}},
		{"needs slog: attrs", []slog.Attr{slog.Any("err", errors.New("x"))}, "m", access},
		{"needs slog: key", nil, "m", []slog.Attr{slog.Int("a key", 1), slog.Int("", 2)}},
		{"kinds", nil, "m", []slog.Attr{slog.Uint64("u", math.MaxUint64), slog.Int64("i", math.MinInt64), slog.Bool("b", true),
			slog.Duration("d", -90*time.Minute), slog.Duration("zero", 0)}},
		{"symbols", nil, "<&>!#$%", []slog.Attr{slog.String("url", "https://h/p?q=1&r=<x>"), slog.String("p", "~`|{}[]")}},
	}
	for _, c := range cases {
		for _, json := range []bool{false, true} {
			both(t, json, c.with, func(l *slog.Logger) {
				record(l, tm, slog.LevelInfo, c.msg, c.as...)
				record(l, time.Time{}, slog.LevelWarn+2, c.msg, c.as...)
				record(l, tm.In(time.FixedZone("X", -5*3600)), slog.LevelDebug, c.msg, c.as...)
			})
		}
	}
	both(t, false, nil, func(l *slog.Logger) { record(l.WithGroup("g"), tm, slog.LevelInfo, "m", slog.Int("a", 1)) })
	both(t, true, nil, func(l *slog.Logger) { record(l.WithGroup("").With(), tm, slog.LevelInfo, "m", slog.Int("a", 1)) })
}

// FuzzFastHandler checks that the fast handler writes exactly what slog's
// handlers write, for records and attrs made from the fuzzed bytes.
func FuzzFastHandler(f *testing.F) {
	f.Add("http request", "api", "/messages", int64(202), int64(48000), int64(1764483601123456789), false)
	f.Add("a=b c", "", "héllo\n", int64(-1), int64(math.MaxInt64), int64(0), true)
	f.Add(`"q"\`, "x=y", "\x00\x7f", int64(0), int64(-90e9), int64(math.MinInt64), false)
	f.Fuzz(func(t *testing.T, msg, withVal, val string, n, d, unixNano int64, b bool) {
		tm := time.Unix(0, unixNano).UTC()
		with := []slog.Attr{slog.String("component", withVal)}
		var key [8]byte
		binary.LittleEndian.PutUint64(key[:], uint64(n))
		as := []slog.Attr{slog.String("s", val), slog.Int64("n", n), slog.Duration("d", time.Duration(d)), slog.Bool("b", b),
			slog.String(val, withVal), slog.Uint64(string(key[:2]), uint64(n))}
		for _, json := range []bool{false, true} {
			both(t, json, with, func(l *slog.Logger) {
				record(l, tm, slog.Level(n%16), msg, as...)
				record(l, time.Time{}, slog.LevelInfo, msg, as[:2]...)
			})
		}
	})
}

// BenchmarkFastHandler compares the access line through the fast handler
// and through slog's text handler.
func BenchmarkFastHandler(b *testing.B) {
	access := []slog.Attr{
		slog.String("request_id", "0b9c2a1e-8f1e-4c4b-9d1e-2f6a8b7c5d4e"), slog.String("method", "POST"),
		slog.String("path", "/messages"), slog.String("route", "/messages"), slog.Int("status", 202),
		slog.Int("bytes", 60), slog.Duration("duration", 48*time.Microsecond), slog.String("remote", "127.0.0.1:50000"),
	}
	for _, mode := range []string{"fast", "slog"} {
		for _, json := range []bool{false, true} {
			name := mode + "/text"
			if json {
				name = mode + "/json"
			}
			b.Run(name, func(b *testing.B) {
				var h slog.Handler = newFastHandler(discard{}, slog.LevelInfo, json)
				if mode == "slog" {
					h = slog.NewTextHandler(discard{}, nil)
					if json {
						h = slog.NewJSONHandler(discard{}, nil)
					}
				}
				l := slog.New(h).With("component", "api")
				b.ReportAllocs()
				for b.Loop() {
					l.LogAttrs(context.Background(), slog.LevelInfo, "http request", access...)
				}
			})
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestFastHandlerTakesFastPath makes sure the access line never reaches
// the standard handler (else the comparison above would prove nothing).
func TestFastHandlerTakesFastPath(t *testing.T) {
	t.Parallel()
	for _, json := range []bool{false, true} {
		var b bytes.Buffer
		h := newFastHandler(&b, slog.LevelInfo, json)
		h.std = noStd{t}
		l := slog.New(h).With("component", "api")
		l.LogAttrs(context.Background(), slog.LevelInfo, "http request", slog.String("method", "POST"),
			slog.Int("status", 202), slog.Duration("duration", time.Millisecond), slog.String("remote", "127.0.0.1:1"))
		if !bytes.Contains(b.Bytes(), []byte("202")) {
			t.Errorf("json=%v: nothing written: %q", json, b.String())
		}
	}
}

type noStd struct{ t *testing.T }

func (noStd) Enabled(context.Context, slog.Level) bool { return true }
func (n noStd) Handle(context.Context, slog.Record) error {
	n.t.Error("the standard handler was used")
	return nil
}
func (n noStd) WithAttrs([]slog.Attr) slog.Handler { return n }
func (n noStd) WithGroup(string) slog.Handler      { return n }
