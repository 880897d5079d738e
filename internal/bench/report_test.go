package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden.md")

// sampleReport fills every section of a Report, failures included, so the
// golden file shows every branch of WriteMarkdown that has data.
func sampleReport() *Report {
	lat := summary{N: 100, P50: 412 * time.Microsecond, P90: 2 * time.Millisecond, P99: 15 * time.Millisecond, Max: 120 * time.Millisecond}
	pt := func(c, size int, rate float64) Point {
		return Point{Concurrency: c, Size: size, Accepted: 1000, Delivered: 1000, Rate: rate, Latency: lat, Runs: []float64{rate * 0.9, rate, rate * 1.1}}
	}
	bad := pt(64, 100, 900)
	bad.Errors, bad.ErrorText, bad.Delivered = 3, "3 × 503 overloaded", 997
	open := pt(64, 100, 5000)
	open.Offered, open.Late, open.Service, open.MaxRate, open.MaxConcurrency = 5000, 7, lat, 10000, 64
	ceil := pt(64, 100, 5000)
	ceil.Offered = 5000
	open.Ceiling = &ceil
	sweep := pt(64, 100, 8000)
	sweep.PoolSize = 8
	start := time.Date(2026, 11, 30, 1, 2, 0, 0, time.UTC)
	return &Report{
		Started: start, Finished: start.Add(9*time.Minute + 31*time.Second), GoVersion: "go1.26.8", NumCPU: 2, GOMAXPROCS: 2,
		CPUModel: "Test CPU", LoadBefore: "0.50 0.40 0.30", LoadAfter: "1.90 1.00 0.50",
		Options: Options{Warmup: 500 * time.Millisecond, Window: 3 * time.Second, OpenWindow: 5 * time.Second, OpenFraction: 0.5,
			Settle: 2 * time.Second, PoolSweepConc: 64, Repeat: 3, ProcRounds: 3, GatewayEnv: []string{"GOGC=50"}},
		E2E: []Point{pt(64, 100, 10000), bad}, Ceiling: []Point{pt(64, 100, 20000)},
		Pooled: []Point{pt(8, 100, 30000)}, Dial: []Point{pt(8, 100, 300)},
		OneSocket: []Point{pt(1, 100, 40000)}, Direct: []Point{pt(1, 100, 60000)},
		PoolSweep: []Point{sweep}, OpenLoop: &open,
		Memory: &Memory{Binary: "/tmp/gateway", IdleKiB: 20480, PoolSize: 4, Clients: 1000, LoadPeakKiB: 60000, LoadHWMKiB: 61000,
			Load: pt(1000, 100, 7000), Process: pt(64, 100, 9000), ProcessOpen: open,
			IdleRuntime: map[string]float64{"go_goroutines": 40}, LoadRuntime: map[string]float64{"go_goroutines": 1100},
			SmallPool: 1, LargePool: 33, SmallPoolKiB: 18000, LargePoolKiB: 19600, Pairs: [][2]int64{{18000, 19600}, {18100, 19800}},
			SmallRuntime: map[string]float64{"go_goroutines": 30, "go_memstats_stack_inuse_bytes": 1 << 20, "go_memstats_heap_inuse_bytes": 4 << 20},
			LargeRuntime: map[string]float64{"go_goroutines": 126, "go_memstats_stack_inuse_bytes": 2 << 20, "go_memstats_heap_inuse_bytes": 5 << 20}},
		Micro:        []Micro{{Package: "github.com/relaygate/relaygate/internal/relay", Name: "BenchmarkPoolSend", NsPerOp: 1234, MBps: 80.5, AllocsPerOp: 0}},
		MicroCommand: "go test -bench .",
		Processes: &Processes{Conc: 64, Size: 100, BatchSize: 100, Rows: []ProcRow{
			{Key: procBare, Name: "bare", Requests: 80000, Messages: 80000, CPU: 1, CPUPerReq: 12700 * time.Nanosecond, CPUPerMsg: 12700 * time.Nanosecond, P50: lat.P50, P99: lat.P99},
			{Key: procPlainWarn, Name: "warn", Requests: 25000, Messages: 25000, CPU: 0.6, CPUPerReq: 24 * time.Microsecond, CPUPerMsg: 24 * time.Microsecond, RelayCPU: 30 * time.Microsecond, Runs: []float64{24000, 25000, 26000},
				Rounds: []ProcRun{{Messages: 24000}, {Messages: 25000}, {Messages: 26000}}},
			{Key: procPlainInfo, Name: "info", Requests: 24000, Messages: 24000, CPU: 0.6, CPUPerReq: 25 * time.Microsecond, CPUPerMsg: 25 * time.Microsecond, Errors: 2, ErrorText: "2× HTTP 503 overloaded",
				Rounds: []ProcRun{{Messages: 23000}, {Messages: 24000}, {Messages: 25500}}},
			{Key: procRequest, Name: "request", Requests: 13000, Messages: 13000, CPU: 0.5, CPUPerReq: 40 * time.Microsecond, CPUPerMsg: 40 * time.Microsecond},
			{Key: procBatch, Name: "batch", NA: "n/a: POST /messages:batch answered 404"},
			{Key: procOpen, Name: "open", Requests: 12000, Messages: 12000, Offered: 12000, P50: lat.P50, P99: 1500 * time.Microsecond, SvcP99: 1200 * time.Microsecond, Late: 42},
			{Key: procOpenLow, Name: "open low", Requests: 6000, Messages: 6000, Offered: 6000, P50: lat.P50, P99: 900 * time.Microsecond},
			{Key: procBareOpenLow, Name: "bare open low", Requests: 6000, Messages: 6000, Offered: 6000, P50: lat.P50, P99: 800 * time.Microsecond},
		}},
		Failures: []string{"e2e c=64 100 B: delivered 997 of 1000"},
	}
}

// TestWriteMarkdownGolden compares the report of sampleReport, and of an
// empty quick one, with testdata (go test -run Golden -update rewrites).
func TestWriteMarkdownGolden(t *testing.T) {
	empty := &Report{Quick: true, MemoryErr: "skipped", MicroErr: "skipped"}
	for name, rep := range map[string]*Report{"report.golden.md": sampleReport(), "report-empty.golden.md": empty} {
		var got bytes.Buffer
		if err := rep.WriteMarkdown(&got, "go run ./cmd/relaybench", "## Notes\n\nhand-written"); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s differs; got:\n%s", name, got.String())
		}
	}
}

// A ratio of two repeated rows is the median of the rounds' ratios, not
// the ratio of the medians: a slow phase of the machine in one round then
// moves one value, not the verdict (figures from a run of 2026-11-30 whose
// medians said 16.3 %).
func TestRoundRatio(t *testing.T) {
	runs := func(msgs ...float64) *ProcRow {
		r := &ProcRow{}
		for _, m := range msgs {
			r.Rounds = append(r.Rounds, ProcRun{Messages: m})
		}
		r.Messages = slices.Sorted(slices.Values(msgs))[1]
		return r
	}
	warn, info := runs(11198, 13587, 13311), runs(10675, 11157, 13113)
	cost, each := roundRatio(info, warn, func(i, w ProcRun) float64 { return 100 * (1 - ratio(i.Messages, w.Messages)) })
	if cost < 4.6 || cost > 4.7 {
		t.Errorf("cost %.2f %%, want the median of the rounds (4.67 %%)", cost)
	}
	if got := each(" %"); got != ", the median of the rounds' 4.67 %, 17.88 %, 1.49 %" {
		t.Errorf("rounds: %q", got)
	}
	one := &ProcRow{Messages: 100}
	if v, each := roundRatio(one, warn, func(a, b ProcRun) float64 { return ratio(a.Messages, b.Messages) }); v != 100.0/13311 || each("") != "" {
		t.Errorf("without rounds on both sides: %v %q, want the rows' own ratio", v, each(""))
	}
}
