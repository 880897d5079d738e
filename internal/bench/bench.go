package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Options select what Run measures and for how long. Zero fields take the
// full run's values (FullOptions); QuickOptions is the CI smoke run.
type Options struct {
	Warmup       time.Duration // unmeasured load before each window
	Window       time.Duration // measurement window of each closed-loop point
	OpenWindow   time.Duration // measurement window of the open-loop run
	DrainTimeout time.Duration // how long to wait for the receiver to catch up
	Settle       time.Duration // idle time before reading a gateway's idle RSS

	Concurrency     []int // closed-loop concurrency of the e2e and ceiling runs
	Sizes           []int // message sizes in bytes
	PoolSizes       []int // pool sizes of the pool-size sweep (at PoolSweepConc, 100 B)
	PoolSweepConc   int
	DialConcurrency []int // concurrency of dial-per-message and its pooled comparison (100 B)
	MemClients      int   // concurrent HTTP clients of the memory run
	LargePool       int   // pool size compared with 1 for the per-connection RSS

	// GatewayBin is the gateway binary for the memory run; "" builds
	// ./cmd/gateway with the go command. "-" skips the memory run.
	GatewayBin string
	// MicroBenchtime is go test's -benchtime for the micro-benchmarks; ""
	// skips them.
	MicroBenchtime string

	// Log receives the components' warnings (nil: discarded). Progress,
	// if set, gets one line per measured point.
	Log      *slog.Logger
	Progress io.Writer
	Quick    bool // recorded in the report
}

// FullOptions is the full run that writes BENCHMARKS.md: every
// configuration of issue 6, a few minutes in all.
func FullOptions() Options {
	return Options{
		Warmup: time.Second, Window: 5 * time.Second, OpenWindow: 10 * time.Second,
		DrainTimeout: 15 * time.Second, Settle: 2 * time.Second,
		Concurrency:     []int{1, 16, 64, 256},
		Sizes:           []int{100, 4 << 10, 64 << 10},
		PoolSizes:       []int{1, 2, 4, 8, 16},
		PoolSweepConc:   64,
		DialConcurrency: []int{1, 16},
		MemClients:      1000,
		LargePool:       64,
		MicroBenchtime:  "1s",
	}
}

// QuickOptions exercises every scenario briefly (well under a minute): it
// keeps the command from rotting and checks delivered == accepted, but its
// figures are not worth comparing.
func QuickOptions() Options {
	return Options{
		Warmup: 100 * time.Millisecond, Window: 300 * time.Millisecond, OpenWindow: 500 * time.Millisecond,
		DrainTimeout: 10 * time.Second, Settle: 200 * time.Millisecond,
		Concurrency:     []int{1, 64},
		Sizes:           []int{100, 4 << 10},
		PoolSizes:       []int{1, 4},
		PoolSweepConc:   64,
		DialConcurrency: []int{16},
		MemClients:      100,
		LargePool:       16,
		Quick:           true,
	}
}

// Report is everything one Run measured, with the machine it ran on.
type Report struct {
	Started, Finished time.Time
	GoVersion         string
	NumCPU            int
	GOMAXPROCS        int
	CPUModel          string
	LoadBefore        string // /proc/loadavg at the start
	LoadAfter         string
	Quick             bool
	Options           Options

	E2E       []Point // by concurrency × size, default pool
	Ceiling   []Point // same grid, Relayer that returns at once
	Pooled    []Point // pool.Send without HTTP, at DialConcurrency, 100 B
	Dial      []Point // a new WebSocket per message, at DialConcurrency, 100 B
	OneSocket []Point // one sender WebSocket via the emulator, by size
	Direct    []Point // one WebSocket with no relay, by size
	PoolSweep []Point // e2e by pool size at PoolSweepConc, 100 B
	OpenLoop  *Point  // e2e at half the maximum 100 B rate

	Memory       *Memory
	MemoryErr    string
	Micro        []Micro
	MicroCommand string
	MicroErr     string

	// Failures are correctness failures (delivered != accepted, a
	// scenario that could not run); Run's caller exits non-zero on them.
	Failures []string
}

// runner carries one Run's state.
type runner struct {
	opts  Options
	log   *slog.Logger
	stack *stack

	mu  sync.Mutex
	rep *Report
}

func (r *runner) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.rep.Failures = append(r.rep.Failures, msg)
	r.mu.Unlock()
	r.progress("FAIL: %s", msg)
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, format+"\n", args...)
	}
}

// Run measures every configuration of opts, in one process on this
// machine, and returns the report. It returns an error only when the
// benchmark itself cannot start; failed scenarios and delivered !=
// accepted are recorded in Report.Failures. Load targets 127.0.0.1 only
// and every phase is bounded by opts' durations (or ctx).
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = withDefaults(opts)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), CPUModel: cpuModel(), LoadBefore: loadavg(),
		Quick: opts.Quick, Options: opts,
	}
	st, err := startStack(log)
	if err != nil {
		return nil, fmt.Errorf("bench: start emulator: %w", err)
	}
	defer st.close()
	r := &runner{opts: opts, log: log, stack: st, rep: rep}

	// point runs one scenario and reports its progress; a scenario that
	// cannot run is a failure, and the run goes on.
	point := func(name string, f func() (Point, error)) (Point, bool) {
		if ctx.Err() != nil {
			return Point{}, false
		}
		p, err := f()
		if err != nil {
			r.fail("%s: %v", name, err)
			return Point{}, false
		}
		r.progress("%-44s %10.0f/s  p50 %-9s p99 %-9s errors %d", name, p.Rate, fmtDur(p.Latency.P50), fmtDur(p.Latency.P99), p.Errors)
		return p, true
	}

	for _, size := range opts.Sizes {
		for _, c := range opts.Concurrency {
			if p, ok := point(fmt.Sprintf("e2e c=%d %s", c, sizeName(size)), func() (Point, error) { return r.e2e(ctx, c, size, defaultPoolSize) }); ok {
				rep.E2E = append(rep.E2E, p)
			}
			if p, ok := point(fmt.Sprintf("ceiling c=%d %s", c, sizeName(size)), func() (Point, error) { return r.ceiling(ctx, c, size) }); ok {
				rep.Ceiling = append(rep.Ceiling, p)
			}
		}
	}
	for _, c := range opts.DialConcurrency {
		if p, ok := point(fmt.Sprintf("dial-per-message c=%d 100 B", c), func() (Point, error) { return r.dialPerMessage(ctx, c, 100) }); ok {
			rep.Dial = append(rep.Dial, p)
		}
		if p, ok := point(fmt.Sprintf("pool.Send c=%d 100 B", c), func() (Point, error) { return r.pooled(ctx, c, 100) }); ok {
			rep.Pooled = append(rep.Pooled, p)
		}
	}
	for _, size := range opts.Sizes {
		if p, ok := point("one WebSocket via emulator "+sizeName(size), func() (Point, error) { return r.oneSocket(ctx, size, false) }); ok {
			rep.OneSocket = append(rep.OneSocket, p)
		}
		if p, ok := point("direct WebSocket "+sizeName(size), func() (Point, error) { return r.oneSocket(ctx, size, true) }); ok {
			rep.Direct = append(rep.Direct, p)
		}
	}
	for _, n := range opts.PoolSizes {
		if p, ok := point(fmt.Sprintf("e2e pool=%d c=%d 100 B", n, opts.PoolSweepConc), func() (Point, error) { return r.e2e(ctx, opts.PoolSweepConc, 100, n) }); ok {
			rep.PoolSweep = append(rep.PoolSweep, p)
		}
	}
	if best := maxRate(rep.E2E, 100); best > 0 {
		rate := best / 2
		if p, ok := point(fmt.Sprintf("open loop %.0f/s 100 B", rate), func() (Point, error) { return r.openLoopE2E(ctx, rate, 100) }); ok {
			rep.OpenLoop = &p
		}
	}

	if opts.GatewayBin != "-" && ctx.Err() == nil {
		r.progress("memory: gateway process, %d clients", opts.MemClients)
		if err := r.runMemory(ctx); err != nil {
			rep.MemoryErr = err.Error()
			r.progress("memory: skipped: %v", err)
		}
	}
	if opts.MicroBenchtime != "" && ctx.Err() == nil {
		r.progress("micro-benchmarks: go test -bench (benchtime %s)", opts.MicroBenchtime)
		rep.Micro, rep.MicroCommand, err = runMicro(ctx, opts.MicroBenchtime)
		if err != nil {
			rep.MicroErr = err.Error()
			r.progress("micro-benchmarks: %v", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("bench: interrupted: %w", err)
	}
	rep.LoadAfter = loadavg()
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// runMemory builds (or takes) the gateway binary and measures it.
func (r *runner) runMemory(ctx context.Context) error {
	bin := r.opts.GatewayBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "relaybench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if bin, err = buildGateway(ctx, dir); err != nil {
			return err
		}
	}
	m, err := r.memory(ctx, bin)
	if err != nil {
		return err
	}
	if r.opts.GatewayBin == "" {
		m.Binary = "go build ./cmd/gateway"
	}
	r.rep.Memory = m
	r.progress("memory: idle %d KiB, %d clients peak %d KiB, per idle pooled conn %.1f KiB", m.IdleKiB, m.Clients, m.LoadPeakKiB, m.PerConnKiB())
	return nil
}

// maxRate is the highest rate among pts of size.
func maxRate(pts []Point, size int) float64 {
	best := 0.0
	for _, p := range pts {
		if p.Size == size && p.Rate > best {
			best = p.Rate
		}
	}
	return best
}

func withDefaults(o Options) Options {
	d := FullOptions()
	if o.Warmup <= 0 {
		o.Warmup = d.Warmup
	}
	if o.Window <= 0 {
		o.Window = d.Window
	}
	if o.OpenWindow <= 0 {
		o.OpenWindow = d.OpenWindow
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = d.DrainTimeout
	}
	if o.Settle <= 0 {
		o.Settle = d.Settle
	}
	if o.PoolSweepConc <= 0 {
		o.PoolSweepConc = d.PoolSweepConc
	}
	if o.MemClients <= 0 {
		o.MemClients = d.MemClients
	}
	if o.LargePool <= 1 {
		o.LargePool = d.LargePool
	}
	return o
}

// cpuModel is the first "model name" of /proc/cpuinfo, or GOARCH.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v) + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")"
			}
		}
	}
	return runtime.GOOS + "/" + runtime.GOARCH
}

// loadavg is the first three fields of /proc/loadavg, or "".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ErrFailures is returned by Check when the report holds correctness
// failures.
var ErrFailures = errors.New("bench: correctness failures")

// Check returns an error wrapping ErrFailures listing the report's
// correctness failures, or nil.
func (rep *Report) Check() error {
	if len(rep.Failures) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrFailures, strings.Join(rep.Failures, "\n  "))
}
