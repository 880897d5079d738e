package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// post is a send of n body bytes.
func post(n int) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/messages", strings.NewReader(strings.Repeat("x", n)))
}

// isOverloaded reports whether err is the 503 overloaded problem.
func isOverloaded(err error) bool {
	var p *problem
	return errors.As(err, &p) && p.Code == codeOverloaded
}

// relayAt runs sends of size bytes back to back for d, each taking
// size/rate of (fake) time, so that the admission measures rate.
func relayAt(t *testing.T, a *admission, size int, rate float64, d time.Duration) {
	t.Helper()
	per := time.Duration(float64(size) / rate * float64(time.Second))
	for end := time.Now().Add(d); time.Now().Before(end); {
		ad, err := a.admit(post(size), 1<<20)
		if err != nil {
			t.Fatalf("a lone send was refused: %v", err)
		}
		time.Sleep(per)
		a.done(ad, true)
	}
}

func TestAdmissionByteLimit(t *testing.T) {
	a := &admission{limit: 1000, now: time.Now}
	first, err := a.admit(post(800), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.admit(post(300), 1<<20); !isOverloaded(err) {
		t.Fatalf("800 + 300 bytes over a 1000-byte limit: got %v, want overloaded", err)
	}
	if _, err := a.admit(post(200), 1<<20); err != nil {
		t.Fatalf("800 + 200 bytes within the limit: %v", err)
	}
	a.done(first, true)
	if got := a.inflight.Load(); got != 200 {
		t.Fatalf("in flight %d, want 200 (refused sends leave nothing behind)", got)
	}
}

func TestAdmissionLoneSendAlwaysAdmitted(t *testing.T) {
	a := &admission{limit: 10, maxWait: time.Nanosecond, now: time.Now}
	a.rate.Store(1) // absurdly slow: 1 byte/s
	ad, err := a.admit(post(5000), 1<<20)
	if err != nil {
		t.Fatalf("a send with nothing ahead was refused: %v", err)
	}
	a.done(ad, false)
}

func TestAdmissionByExpectedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &admission{maxWait: 500 * time.Millisecond, now: time.Now}
		if _, err := a.admit(post(10<<20), 64<<20); err != nil {
			t.Fatal(err)
		}
		// Unknown rate: the wait bound does not apply yet.
		second, err := a.admit(post(10<<20), 64<<20)
		if err != nil {
			t.Fatalf("refused before any rate was measured: %v", err)
		}
		a.done(second, false)
		a.done(admitted{10 << 20}, false)

		relayAt(t, a, 64<<10, 1<<20, time.Second) // 1 MiB/s
		if r := a.wait(1 << 20); r < 900*time.Millisecond || r > 1100*time.Millisecond {
			t.Fatalf("1 MiB ahead at 1 MiB/s: expected wait %v, want about 1s", r)
		}
		// 256 KiB ahead (about 250 ms): admitted; 768 KiB ahead: refused.
		ahead, err := a.admit(post(256<<10), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.admit(post(100), 1<<20); err != nil {
			t.Fatalf("256 KiB ahead at 1 MiB/s (250 ms < 500 ms): %v", err)
		}
		more, err := a.admit(post(512<<10), 1<<20)
		if err != nil {
			t.Fatalf("256 KiB ahead: %v", err)
		}
		if _, err := a.admit(post(100), 1<<20); !isOverloaded(err) {
			t.Fatalf("768 KiB ahead at 1 MiB/s (750 ms > 500 ms): got %v, want overloaded", err)
		}
		a.done(more, false)
		a.done(ahead, false)
	})
}

func TestAdmissionIdleTimeDoesNotSlowTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &admission{maxWait: time.Second, now: time.Now}
		relayAt(t, a, 64<<10, 8<<20, time.Second) // 8 MiB/s
		before := a.wait(8 << 20)
		time.Sleep(time.Minute) // idle
		relayAt(t, a, 64<<10, 8<<20, 200*time.Millisecond)
		after := a.wait(8 << 20)
		if before < 900*time.Millisecond || after < 900*time.Millisecond || after > 1100*time.Millisecond {
			t.Fatalf("8 MiB ahead at 8 MiB/s: wait %v before an idle minute, %v after; want about 1s both", before, after)
		}
	})
}

func TestAdmissionRateDecaysWhileNothingGoesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &admission{maxWait: 500 * time.Millisecond, now: time.Now}
		relayAt(t, a, 64<<10, 8<<20, time.Second)
		healthy := a.wait(1 << 20)
		// The listener stalls: sends time out, nothing is sent.
		for range 20 {
			ad, err := a.admit(post(64<<10), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			a.done(ad, false)
		}
		if stalled := a.wait(1 << 20); stalled < 10*healthy {
			t.Fatalf("expected wait of 1 MiB: %v healthy, %v after 2 s with nothing sent; want it to grow", healthy, stalled)
		}
	})
}

func TestShedClosesLargeUnreadBodies(t *testing.T) {
	for _, tc := range []struct {
		size  int
		close bool
	}{{100, false}, {shedKeepAliveMax, false}, {shedKeepAliveMax + 1, true}, {-1, true}} {
		r := post(max(tc.size, 0))
		r.ContentLength = int64(tc.size)
		w := httptest.NewRecorder()
		want := newProblem(codeOverloaded, "x")
		if err := shed(w, r, want); err != want {
			t.Fatalf("shed returned %v, want its argument", err)
		}
		if got := w.Header().Get("Connection") == "close"; got != tc.close {
			t.Errorf("body of %d bytes: Connection: close %v, want %v", tc.size, got, tc.close)
		}
	}
}

func TestShedLogSumsUpOncePerSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf strings.Builder
		log := slog.New(slog.NewTextHandler(&buf, nil))
		var l shedLog
		for range 1000 {
			l.note(t.Context(), log)
		}
		time.Sleep(time.Second)
		l.note(t.Context(), log)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "refused=1") || !strings.Contains(lines[1], "refused=1000") {
			t.Fatalf("want two lines, refused=1 then refused=1000 (999 held back + 1); got:\n%s", buf.String())
		}
	})
}

// errRelayer fails every send with err (nil: accepts it).
type errRelayer struct{ err error }

func (r errRelayer) Send(context.Context, relay.Message) error { return r.err }

// TestAdmissionCountsOnlySentBytes sends through the handlers: only
// messages that went out count towards the rate (a send refused by the
// relay is fast but relays nothing), for POST /messages and a batch.
func TestAdmissionCountsOnlySentBytes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		path, ctype string
		body        string
		wantSent    bool
	}{
		{"sent", nil, "/messages", "application/json", `{"message":"hi"}`, true},
		{"refused", relay.ErrOverloaded, "/messages", "application/json", `{"message":"hi"}`, false},
		{"batch sent", nil, "/messages:batch", "application/json", `{"messages":[{"message":"hi"}]}`, true},
		{"batch refused", relay.ErrOverloaded, "/messages:batch", "application/json", `{"messages":[{"message":"hi"}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{MaxWait: time.Second}, errRelayer{tc.err}, nil, slog.New(slog.DiscardHandler), nil)
			r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
			r.Host = "localhost"
			r.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if got := s.admission.sent.Load() > 0; got != tc.wantSent {
				t.Errorf("status %d: bytes counted as sent: %v, want %v", w.Code, got, tc.wantSent)
			}
			if n := s.admission.inflight.Load(); n != 0 {
				t.Errorf("%d bytes still in flight after the request", n)
			}
		})
	}
}
