package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// utime 250, stime 50 ticks; the command name holds ") (" to mislead
	// a naive split.
	stat := "4242 (gate) (way) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 gateway S 1", "4242 (g) S 1 2 3", "4242 (g) S 1 2 3 4 5 6 7 8 9 10 x 50 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

// TestBareServerAndLoadChild runs the two child-process modes in this
// process: the bare server, and the load generator against it, whose
// protocol lines and result readLoadOutput must read back.
func TestBareServerAndLoadChild(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- ServeBare(ctx, "127.0.0.1:0", pw) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		t.Fatalf("first line %q", line)
	}

	out, in := io.Pipe()
	spec := LoadSpec{URL: "http://" + addr + "/messages", Body: string(jsonBody(100)), Conc: 4,
		Warmup: 10 * time.Millisecond, Window: 50 * time.Millisecond, Want: http.StatusAccepted}
	go func() { in.CloseWithError(RunLoad(ctx, spec, in)) }()
	var marks []string
	res, err := readLoadOutput(out, func(l string) { marks = append(marks, l) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(marks, ",") != lineMeasure+","+lineStop {
		t.Errorf("protocol lines %q", marks)
	}
	if res.Requests == 0 || res.Messages < res.Requests || len(res.Errors) > 0 || res.P99 == 0 {
		t.Errorf("result %+v", res)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeBare: %v", err)
	}
}

func TestBatchBody(t *testing.T) {
	t.Parallel()
	b := string(batchBody(3, 100))
	if !strings.HasPrefix(b, `{"messages":[{"message":"`) || strings.Count(b, `{"message":`) != 3 || !strings.HasSuffix(b, `"}]}`) {
		t.Errorf("batch body %q", b)
	}
}

// TestRawPoster checks the load child's poster against a real server: the
// request it writes, kept-alive connections, a server that closes them,
// a problem answer, and a chunked batch answer counted by its sent items.
func TestRawPoster(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || string(b) != `{"message":"hi"}`:
			w.WriteHeader(http.StatusBadRequest)
		case r.URL.Path == "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/full":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"overloaded"}`)
		case r.URL.RawQuery == "batch=1":
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"results":[`+strings.Repeat(`{"status":"sent"},`, 200)+`{"status":"failed"}]}`) // > 2 KiB: chunked
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	run := func(path string, want int, batch bool) (msgs int64, err error) {
		var n atomic.Int64
		p, err := newRawPoster(LoadSpec{URL: srv.URL + path, Body: `{"message":"hi"}`, Want: want, Batch: batch}, 1, &n)
		if err != nil {
			t.Fatal(err)
		}
		defer p.closeAll()
		for range 3 {
			if err = p.do(t.Context(), 0); err != nil {
				break
			}
		}
		return n.Load(), err
	}

	conns.Store(0)
	if n, err := run("/messages", http.StatusAccepted, false); err != nil || n != 3 || conns.Load() != 1 {
		t.Errorf("keep-alive: %d messages, err %v, %d connections; want 3, nil, 1", n, err, conns.Load())
	}
	conns.Store(0)
	if n, err := run("/close", http.StatusAccepted, false); err != nil || n != 3 || conns.Load() != 3 {
		t.Errorf("Connection: close: %d messages, err %v, %d connections; want 3, nil, 3", n, err, conns.Load())
	}
	var se *statusError
	if _, err := run("/full", http.StatusAccepted, false); !errors.As(err, &se) || se.status != 503 || se.code != "overloaded" {
		t.Errorf("problem answer: err %v", err)
	}
	if n, err := run("/messages:batch?batch=1", http.StatusOK, true); err != nil || n != 600 {
		t.Errorf("batch: %d messages, err %v; want 600, nil", n, err)
	}
	if _, err := newRawPoster(LoadSpec{URL: "https://127.0.0.1/"}, 1, new(atomic.Int64)); err == nil {
		t.Error("https URL: no error")
	}
}
