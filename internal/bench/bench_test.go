package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestPercentiles(t *testing.T) {
	t.Parallel()
	var l latencies
	for i := 100; i >= 1; i-- { // unsorted on purpose
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	s := l.summarize()
	for _, tt := range []struct {
		name      string
		got, want time.Duration
	}{
		{"p50", s.P50, 50 * time.Millisecond},
		{"p90", s.P90, 90 * time.Millisecond},
		{"p99", s.P99, 99 * time.Millisecond},
		{"max", s.Max, 100 * time.Millisecond},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if s.N != 100 {
		t.Errorf("N: got %d, want 100", s.N)
	}
	if got := (latencies{}).summarize(); got != (summary{}) {
		t.Errorf("empty: got %+v, want zero", got)
	}
	if got := (latencies{7}).summarize(); got.P50 != 7 || got.P99 != 7 {
		t.Errorf("one value: got %+v", got)
	}
}

func TestJSONBodySize(t *testing.T) {
	t.Parallel()
	for _, n := range []int{100, 4 << 10, 64 << 10} {
		b := jsonBody(n)
		if len(b) != n {
			t.Errorf("jsonBody(%d): got %d bytes", n, len(b))
		}
		var v struct {
			Message string `json:"message"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil || v.Message == "" {
			t.Errorf("jsonBody(%d) is not a send request: %v", n, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int
		err  bool
	}{
		{"100", 100, false}, {"100B", 100, false}, {"4KiB", 4096, false}, {"4k", 4096, false},
		{"64 KiB", 64 << 10, false}, {"1MiB", 1 << 20, false},
		{"", 0, true}, {"0", 0, true}, {"-1", 0, true}, {"4x", 0, true}, {"1.5k", 0, true}, {"12abc", 0, true},
	} {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseSize(%q): got %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	for _, n := range []int{100, 4 << 10, 64 << 10} {
		if got, err := parseSize(sizeName(n)); err != nil || got != n {
			t.Errorf("parseSize(sizeName(%d)) = %d, %v", n, got, err)
		}
	}
}

func TestParseBenchOutput(t *testing.T) {
	t.Parallel()
	out := `goos: linux
goarch: amd64
pkg: github.com/relaygate/relaygate/internal/relay
cpu: AMD EPYC
BenchmarkCreateToken-2        	    2000	      3036 ns/op	    1104 B/op	      18 allocs/op
BenchmarkPoolSend/100B-2      	  500000	       812.5 ns/op	 123.08 MB/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/relaygate/relaygate/internal/relay	0.045s
pkg: github.com/relaygate/relaygate/internal/api
BenchmarkDecodeSendRequest/4KiB-2         	    2000	     34586 ns/op	 119.21 MB/s	   31050 B/op	      27 allocs/op
BenchmarkNoMem-16 	 10	 5 ns/op
`
	got := parseBenchOutput([]byte(out))
	want := []Micro{
		{Package: "github.com/relaygate/relaygate/internal/relay", Name: "BenchmarkCreateToken", Iterations: 2000, NsPerOp: 3036, BytesPerOp: 1104, AllocsPerOp: 18},
		{Package: "github.com/relaygate/relaygate/internal/relay", Name: "BenchmarkPoolSend/100B", Iterations: 500000, NsPerOp: 812.5, MBps: 123.08, BytesPerOp: 0, AllocsPerOp: 0},
		{Package: "github.com/relaygate/relaygate/internal/api", Name: "BenchmarkDecodeSendRequest/4KiB", Iterations: 2000, NsPerOp: 34586, MBps: 119.21, BytesPerOp: 31050, AllocsPerOp: 27},
		{Package: "github.com/relaygate/relaygate/internal/api", Name: "BenchmarkNoMem", Iterations: 10, NsPerOp: 5, BytesPerOp: -1, AllocsPerOp: -1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseStatusField(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tgateway\nVmPeak:\t  1261900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   16392 kB\nThreads:\t7\n")
	for _, tt := range []struct {
		field string
		want  int64
		err   bool
	}{{"VmRSS", 16392, false}, {"VmHWM", 20480, false}, {"VmSwap", 0, true}, {"Threads", 0, true}} {
		got, err := parseStatusField(status, tt.field)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tt.field, got, err, tt.want, tt.err)
		}
	}
}

// TestCountedReportsLostMessages checks that a send the receiver never
// counts is a failure, and that a receiver that counts every send is not.
func TestCountedReportsLostMessages(t *testing.T) {
	t.Parallel()
	opts := withDefaults(Options{Warmup: 5 * time.Millisecond, Window: 20 * time.Millisecond, DrainTimeout: 50 * time.Millisecond})
	for _, tt := range []struct {
		name     string
		lose     bool
		wantFail bool
	}{{"every message delivered", false, false}, {"one message lost", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &runner{opts: opts, rep: &Report{}}
			var k sink
			var lost atomic.Bool
			p := r.counted(context.Background(), tt.name, &k, 2, func(context.Context, int) error {
				if tt.lose && lost.CompareAndSwap(false, true) {
					return nil // accepted, never delivered
				}
				k.add(100)
				return nil
			})
			if got := len(r.rep.Failures) > 0; got != tt.wantFail {
				t.Errorf("failures %q: got failed=%v, want %v (delivered %d, accepted %d)", r.rep.Failures, got, tt.wantFail, p.Delivered, p.Accepted)
			}
			if err := r.rep.Check(); (err != nil) != tt.wantFail || err != nil && !errors.Is(err, ErrFailures) {
				t.Errorf("Check: got %v", err)
			}
			if p.Accepted == 0 || p.Rate <= 0 {
				t.Errorf("nothing measured: %+v", p)
			}
		})
	}
}

// TestCountedSharedReceiver checks that runs sharing a receiver are each
// compared with their own deliveries.
func TestCountedSharedReceiver(t *testing.T) {
	t.Parallel()
	opts := withDefaults(Options{Warmup: 5 * time.Millisecond, Window: 20 * time.Millisecond, DrainTimeout: 50 * time.Millisecond})
	r := &runner{opts: opts, rep: &Report{}}
	var k sink
	deliver := func(context.Context, int) error { k.add(1); return nil }
	first := r.counted(context.Background(), "first", &k, 2, deliver)
	second := r.counted(context.Background(), "second", &k, 2, deliver)
	if len(r.rep.Failures) > 0 {
		t.Fatalf("got failures %q", r.rep.Failures)
	}
	if second.Delivered != second.Accepted || first.Delivered+second.Delivered != k.msgs.Load() {
		t.Errorf("got first %d/%d, second %d/%d, receiver %d", first.Delivered, first.Accepted, second.Delivered, second.Accepted, k.msgs.Load())
	}
}

// TestRunSmoke runs every in-process scenario on a minimal grid through
// the real gateway, emulator and listener, and checks the report.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and loads them briefly")
	}
	t.Parallel()
	var progress bytes.Buffer
	rep, err := Run(t.Context(), Options{
		Warmup: 20 * time.Millisecond, Window: 100 * time.Millisecond, OpenWindow: 100 * time.Millisecond,
		Concurrency: []int{4}, Sizes: []int{100}, PoolSizes: []int{2}, DialConcurrency: []int{2},
		GatewayBin: "-", // the memory run builds and starts processes; covered by relaybench --quick
		Log:        testlog.LoggerAt(t, slog.LevelWarn),
		Progress:   &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	for _, tt := range []struct {
		name string
		pts  []Point
	}{
		{"e2e", rep.E2E}, {"ceiling", rep.Ceiling}, {"pooled", rep.Pooled}, {"dial", rep.Dial},
		{"one socket", rep.OneSocket}, {"direct", rep.Direct}, {"pool sweep", rep.PoolSweep},
	} {
		if len(tt.pts) != 1 {
			t.Errorf("%s: got %d points, want 1", tt.name, len(tt.pts))
			continue
		}
		// Accepted, not Rate: on a loaded machine a 100 ms window may see
		// no delivery at all (latency > window), which is no error.
		if p := tt.pts[0]; p.Accepted == 0 || p.Rate < 0 {
			t.Errorf("%s: nothing measured: %+v", tt.name, p)
		}
	}
	if rep.OpenLoop == nil || rep.OpenLoop.Accepted == 0 {
		t.Errorf("open loop: got %+v", rep.OpenLoop)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md, "test", "## Notes\n\nhand-written"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Targets", "## 1. End to end", "## 2. HTTP ceiling", "## 3. The seed's way",
		"## 4. Relay ceiling", "## 5. Pool size", "open loop", "## 6. Memory", "## 7. Micro-benchmarks", "hand-written",
		"runtime.NumCPU", rep.GoVersion} {
		if !strings.Contains(md.String(), want) && !strings.Contains(strings.ToLower(md.String()), strings.ToLower(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md.String(), "Correctness failures") {
		t.Errorf("report lists failures:\n%s", md.String())
	}
}
