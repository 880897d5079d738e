package logging_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/relaygate/relaygate/internal/logging"
)

// recorder is an io.Writer that counts its writes.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	return r.buf.Write(p)
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func TestBufferedFlushesOnTheTimer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := logging.NewBuffered(&rec, 1<<10, 100*time.Millisecond)
		defer b.Close()
		log := slog.New(slog.NewTextHandler(b, nil))
		for i := range 3 {
			log.Info("request", "i", i)
		}
		if got, n := rec.snapshot(); n != 0 || got != "" {
			t.Fatalf("before the interval: %d writes %q, want none", n, got)
		}
		time.Sleep(100 * time.Millisecond) // the fake clock of the bubble
		synctest.Wait()
		got, n := rec.snapshot()
		if n != 1 || strings.Count(got, "msg=request") != 3 {
			t.Fatalf("after the interval: %d writes %q, want the 3 lines in 1 write", n, got)
		}
	})
}

func TestBufferedFlushesWhenFull(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := logging.NewBuffered(&rec, 16, time.Hour)
		defer b.Close()
		b.Write([]byte("0123456789\n"))
		b.Write([]byte("abcdefghij\n")) // does not fit: the first line goes out
		if got, n := rec.snapshot(); n != 1 || got != "0123456789\n" {
			t.Fatalf("got %d writes %q", n, got)
		}
		b.Write([]byte(strings.Repeat("x", 40) + "\n")) // larger than the buffer: whole, not split
		b.Flush()
		if got, _ := rec.snapshot(); got != "0123456789\nabcdefghij\n"+strings.Repeat("x", 40)+"\n" {
			t.Fatalf("got %q", got)
		}
	})
}

// TestBufferedLosesNothingAtClose: every line written by concurrent
// loggers before, during and after Close reaches the writer, each whole
// and each logger's in order.
func TestBufferedLosesNothingAtClose(t *testing.T) {
	t.Parallel()
	var rec recorder
	b := logging.NewBuffered(&rec, 256, time.Hour)
	log := slog.New(logging.NewLevelFlusher(slog.NewTextHandler(b, nil), b, slog.LevelWarn))
	const loggers, lines = 8, 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range loggers {
		wg.Go(func() {
			<-start
			for i := range lines {
				log.Info("line", "g", g, "i", i)
			}
		})
	}
	close(start)
	if err := b.Close(); err != nil { // while the loggers run
		t.Fatal(err)
	}
	wg.Wait()
	log.Info("after close")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := rec.snapshot()
	next := make([]int, loggers)
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		var g, i int
		if strings.Contains(l, "after close") {
			continue
		}
		if _, err := fmt.Sscanf(l[strings.Index(l, " g="):], " g=%d i=%d", &g, &i); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("logger %d: line %d, want %d", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != lines {
			t.Errorf("logger %d: %d lines reached the writer, want %d", g, n, lines)
		}
	}
	if !strings.HasSuffix(got, "msg=\"after close\"\n") {
		t.Errorf("the line logged after Close is missing")
	}
}

func TestLevelFlusherWritesWarningsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := logging.NewBuffered(&rec, 1<<10, time.Hour)
		defer b.Close()
		log := slog.New(logging.NewLevelFlusher(slog.NewTextHandler(b, nil), b, slog.LevelWarn)).With("svc", "gw")
		log.Info("buffered")
		if _, n := rec.snapshot(); n != 0 {
			t.Fatalf("info line was written at once")
		}
		log.Warn("urgent")
		if got, n := rec.snapshot(); n != 1 || !strings.Contains(got, "buffered") || !strings.Contains(got, "urgent") {
			t.Fatalf("after a warning: %d writes %q", n, got)
		}
	})
}
