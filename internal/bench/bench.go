package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
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
	OpenFraction float64       // the open loop offers this fraction of the maximum rate (default 0.5)
	DrainTimeout time.Duration // how long to wait for the receiver to catch up
	Settle       time.Duration // idle time before reading a gateway's idle RSS

	Concurrency     []int // closed-loop concurrency of the e2e and ceiling runs
	Sizes           []int // message sizes in bytes
	PoolSizes       []int // pool sizes of the pool-size sweep (at PoolSweepConc, 100 B)
	PoolSweepConc   int
	DialConcurrency []int // concurrency of dial-per-message and its pooled comparison (100 B)
	Repeat          int   // runs per point (round-robin within a group); the median is reported
	// ProcRounds is how many rounds section 8's closed loops take turns
	// (0: Repeat). Its ratio targets are medians of the rounds' ratios,
	// and throughput on this machine moves by ±20 % between runs
	// seconds apart, so it takes more rounds than the other sections.
	ProcRounds int
	MemClients int // concurrent HTTP clients of the memory run
	LargePool  int // pool size compared with 1 for the per-connection RSS

	// Only, if not empty, names the sections to run: e2e (with the HTTP
	// ceiling), dial, relay, pool, open, memory, process, micro.
	Only []string

	// GatewayBin is the gateway binary for the memory run; "" builds
	// ./cmd/gateway with the go command. "-" skips the memory run.
	GatewayBin string
	// GatewayEnv is added to the gateway process's environment
	// ("GOGC=50", "GOMEMLIMIT=48MiB", "GATEWAY_LOG_LEVEL=warn"), for
	// experiments; the report lists it.
	GatewayEnv []string
	// MicroBenchtime is go test's -benchtime for the micro-benchmarks; ""
	// skips them.
	MicroBenchtime string
	// ChildBin is the relaybench binary, run as the bare server and the
	// load generator of the separate-process section (its -serve-bare and
	// -load-child modes); "" skips that section.
	ChildBin string

	// Log receives the components' warnings (nil: discarded). Progress,
	// if set, gets one line per measured point.
	Log      *slog.Logger
	Progress io.Writer
	Quick    bool // recorded in the report
}

// FullOptions is the full run that writes BENCHMARKS.md: every
// configuration of issue 6, each point three times, about ten minutes.
func FullOptions() Options {
	return Options{
		Warmup: 500 * time.Millisecond, Window: 3 * time.Second, OpenWindow: 10 * time.Second, Repeat: 3, ProcRounds: 5,
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
	Processes    *Processes // the separate-process section
	ProcessesErr string
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

	built, builtDir string // the gateway binary built by gatewayBinary
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

	for _, size := range opts.Sizes {
		if !opts.runs("e2e") {
			break
		}
		for _, c := range opts.Concurrency {
			got := r.measure(ctx, []job{
				{fmt.Sprintf("e2e c=%d %s", c, sizeName(size)), func() (Point, error) { return r.e2e(ctx, c, size, defaultPoolSize) }},
				{fmt.Sprintf("ceiling c=%d %s", c, sizeName(size)), func() (Point, error) { return r.ceiling(ctx, c, size) }},
			})
			rep.E2E, rep.Ceiling = appendOK(rep.E2E, got[0]), appendOK(rep.Ceiling, got[1])
		}
	}
	for _, c := range opts.DialConcurrency {
		if !opts.runs("dial") {
			break
		}
		got := r.measure(ctx, []job{
			{fmt.Sprintf("dial-per-message c=%d 100 B", c), func() (Point, error) { return r.dialPerMessage(ctx, c, 100) }},
			{fmt.Sprintf("pool.Send c=%d 100 B", c), func() (Point, error) { return r.pooled(ctx, c, 100) }},
		})
		rep.Dial, rep.Pooled = appendOK(rep.Dial, got[0]), appendOK(rep.Pooled, got[1])
	}
	for _, size := range opts.Sizes {
		if !opts.runs("relay") {
			break
		}
		got := r.measure(ctx, []job{
			{"one WebSocket via emulator " + sizeName(size), func() (Point, error) { return r.oneSocket(ctx, size, false) }},
			{"direct WebSocket " + sizeName(size), func() (Point, error) { return r.oneSocket(ctx, size, true) }},
		})
		rep.OneSocket, rep.Direct = appendOK(rep.OneSocket, got[0]), appendOK(rep.Direct, got[1])
	}
	if opts.runs("pool") {
		var jobs []job
		for _, n := range opts.PoolSizes {
			jobs = append(jobs, job{fmt.Sprintf("e2e pool=%d c=%d 100 B", n, opts.PoolSweepConc), func() (Point, error) { return r.e2e(ctx, opts.PoolSweepConc, 100, n) }})
		}
		for _, p := range r.measure(ctx, jobs) {
			rep.PoolSweep = appendOK(rep.PoolSweep, p)
		}
	}
	if opts.runs("open") {
		conc := bestConcurrency(rep.E2E, 100)
		if conc == 0 {
			conc = 64
		}
		got := r.measure(ctx, []job{{fmt.Sprintf("open loop at %.0f%% of the c=%d maximum, 100 B", 100*opts.OpenFraction, conc), func() (Point, error) { return r.openLoopE2E(ctx, conc, 100) }}})
		rep.OpenLoop = got[0]
	}

	defer r.removeBuilt()
	if opts.GatewayBin != "-" && opts.runs("memory") && ctx.Err() == nil {
		r.progress("memory: gateway process, %d clients", opts.MemClients)
		if err := r.runMemory(ctx); err != nil {
			rep.MemoryErr = err.Error()
			r.progress("memory: skipped: %v", err)
		}
	}
	if opts.runs("process") && ctx.Err() == nil {
		r.progress("separate processes: bare net/http and the gateway, load generator in its own process")
		if err := r.runProcessSection(ctx); err != nil {
			rep.ProcessesErr = err.Error()
			r.progress("separate processes: skipped: %v", err)
		}
	}
	if opts.MicroBenchtime != "" && opts.runs("micro") && ctx.Err() == nil {
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

// job is one scenario of a measure group.
type job struct {
	name string
	run  func() (Point, error)
}

// measure runs the jobs Repeat times, round-robin (A B A B …), so that a
// burst of load from elsewhere on the machine hits all of them alike, and
// returns for each job its run with the median rate, with every run's rate
// in Runs; nil for a job that failed (recorded as a failure). Progress
// gets one line per run.
func (r *runner) measure(ctx context.Context, jobs []job) []*Point {
	runs := make([][]Point, len(jobs))
	failed := make([]bool, len(jobs))
	for range max(1, r.opts.Repeat) {
		for i, j := range jobs {
			if ctx.Err() != nil || failed[i] {
				continue
			}
			p, err := j.run()
			if err != nil {
				r.fail("%s: %v", j.name, err)
				failed[i] = true
				continue
			}
			r.progress("%-44s %10.0f/s  p50 %-9s p99 %-9s errors %d", j.name, p.Rate, fmtDur(p.Latency.P50), fmtDur(p.Latency.P99), p.Errors)
			runs[i] = append(runs[i], p)
		}
	}
	out := make([]*Point, len(jobs))
	for i, rs := range runs {
		if failed[i] || len(rs) == 0 {
			continue
		}
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b Point) int { return cmp.Compare(a.Rate, b.Rate) })
		med := sorted[(len(sorted)-1)/2]
		for _, x := range rs {
			med.Runs = append(med.Runs, x.Rate)
		}
		out[i] = &med
	}
	return out
}

func appendOK(pts []Point, p *Point) []Point {
	if p == nil {
		return pts
	}
	return append(pts, *p)
}

// gatewayBinary is Options.GatewayBin, or the gateway built once per Run
// into a temporary directory (removeBuilt removes it).
func (r *runner) gatewayBinary(ctx context.Context) (string, error) {
	if r.opts.GatewayBin != "" {
		return r.opts.GatewayBin, nil
	}
	if r.built != "" {
		return r.built, nil
	}
	dir, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return "", err
	}
	r.builtDir = dir
	r.built, err = buildGateway(ctx, dir)
	return r.built, err
}

func (r *runner) removeBuilt() {
	if r.builtDir != "" {
		os.RemoveAll(r.builtDir)
	}
}

// runProcessSection measures the separate-process section.
func (r *runner) runProcessSection(ctx context.Context) error {
	if r.opts.ChildBin == "" {
		return errors.New("needs the relaybench binary (Options.ChildBin) for the child processes")
	}
	if r.opts.GatewayBin == "-" {
		return errors.New("no gateway binary (-gateway-bin -)")
	}
	bin, err := r.gatewayBinary(ctx)
	if err != nil {
		return err
	}
	ps, err := r.runProcesses(ctx, bin)
	r.rep.Processes = ps
	return err
}

// runMemory builds (or takes) the gateway binary and measures it.
func (r *runner) runMemory(ctx context.Context) error {
	bin, err := r.gatewayBinary(ctx)
	if err != nil {
		return err
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

// bestConcurrency is the concurrency of the highest rate among pts of
// size, or 0.
func bestConcurrency(pts []Point, size int) int {
	best, conc := 0.0, 0
	for _, p := range pts {
		if p.Size == size && p.Rate > best {
			best, conc = p.Rate, p.Concurrency
		}
	}
	return conc
}

// Sections are the names Options.Only accepts.
var Sections = []string{"e2e", "dial", "relay", "pool", "open", "memory", "process", "micro"}

// runs reports whether section is selected.
func (o Options) runs(section string) bool {
	return len(o.Only) == 0 || slices.Contains(o.Only, section)
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
	if o.OpenFraction <= 0 || o.OpenFraction > 1 {
		o.OpenFraction = 0.5
	}
	if o.Repeat <= 0 {
		o.Repeat = 1
	}
	if o.ProcRounds <= 0 {
		o.ProcRounds = o.Repeat
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
