package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relaygate/relaygate/internal/bench"
)

// flags are relaybench's command line.
type flags struct {
	quick              bool
	out                string
	window, warmup     time.Duration
	gatewayBin         string
	benchtime          string
	repeat             int
	only               string
	cpuprofile         string
	gatewayEnv         envFlag
	openFraction       float64
	sizes, concurrency string
	verbose            bool

	// Hidden child-process modes of the separate-process section.
	serveBare string // -serve-bare ADDR
	loadChild string // -load-child SPEC (JSON bench.LoadSpec)
}

// parseFlags parses args; -h prints the usage on stderr and returns
// flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.quick, "quick", false, "run every scenario briefly (under a minute, for CI); writes no file unless -o is given")
	fs.StringVar(&f.out, "o", "", "report file (default BENCHMARKS.md for a full run, none for --quick; - for stdout)")
	fs.DurationVar(&f.window, "window", 0, "measurement window per point (default 5s, quick 300ms)")
	fs.DurationVar(&f.warmup, "warmup", 0, "warm-up before each window (default 1s, quick 100ms)")
	fs.StringVar(&f.gatewayBin, "gateway-bin", "", `gateway binary for the memory figures ("" builds ./cmd/gateway; "-" skips them)`)
	fs.StringVar(&f.benchtime, "benchtime", "", `go test -benchtime of the micro-benchmarks (default 1s; quick skips them; "-" skips them)`)
	fs.IntVar(&f.repeat, "repeat", 0, "runs per point, the median is reported (default 3, and 5 rounds in the separate-process section; quick 1)")
	fs.StringVar(&f.only, "only", "", "comma-separated sections to run: "+strings.Join(bench.Sections, ", ")+" (default all)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (load generator, gateway, emulator and listener share the process) to this file")
	fs.Var(&f.gatewayEnv, "gateway-env", "KEY=VALUE added to the gateway process's environment for the memory figures (repeatable), e.g. GOMEMLIMIT=48MiB")
	fs.Float64Var(&f.openFraction, "open-fraction", 0, "fraction of the maximum rate the open loop offers (default 0.5, the target's)")
	fs.StringVar(&f.sizes, "sizes", "", "comma-separated message sizes (default 100,4KiB,64KiB; quick 100,4KiB)")
	fs.StringVar(&f.concurrency, "concurrency", "", "comma-separated closed-loop concurrency of the e2e and ceiling points (default 1,16,64,256; quick 1,64)")
	fs.BoolVar(&f.verbose, "v", false, "log the components' warnings to stderr")
	fs.StringVar(&f.serveBare, "serve-bare", "", "internal: serve the bare net/http server of the separate-process section on ADDR")
	fs.StringVar(&f.loadChild, "load-child", "", "internal: run the separate-process section's load generator with this JSON spec")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: relaybench [flags]\n\nMeasures relaygate end to end, its HTTP and relay ceilings, the seed's dial-per-message way,\npool sizes, gateway memory and micro-benchmarks, on loopback, and writes a Markdown report.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

// options turns the flags into bench.Options and the command line the
// report names (only the flags that change the figures).
func (f *flags) options(stderr io.Writer) (bench.Options, string, error) {
	opts, command := bench.FullOptions(), "go run ./cmd/relaybench"
	if f.quick {
		opts, command = bench.QuickOptions(), command+" --quick"
	}
	if f.window > 0 {
		opts.Window, command = f.window, command+" -window "+f.window.String()
	}
	if f.warmup > 0 {
		opts.Warmup, command = f.warmup, command+" -warmup "+f.warmup.String()
	}
	if f.repeat > 0 {
		opts.Repeat, opts.ProcRounds, command = f.repeat, f.repeat, command+fmt.Sprintf(" -repeat %d", f.repeat)
	}
	if f.openFraction > 0 {
		opts.OpenFraction, command = f.openFraction, command+fmt.Sprintf(" -open-fraction %g", f.openFraction)
	}
	if err := f.grid(&opts, &command); err != nil {
		return opts, "", err
	}
	opts.GatewayBin, opts.GatewayEnv = f.gatewayBin, f.gatewayEnv
	if self, err := os.Executable(); err == nil {
		opts.ChildBin = self // the bare server and load generator of the separate-process section
	}
	for _, kv := range f.gatewayEnv {
		command += " -gateway-env " + kv
	}
	switch f.benchtime {
	case "":
	case "-":
		opts.MicroBenchtime = ""
	default:
		opts.MicroBenchtime = f.benchtime
	}
	level := slog.LevelError
	if f.verbose {
		level = slog.LevelWarn
	}
	opts.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Progress = stderr
	return opts, command, nil
}

// grid applies -only, -sizes and -concurrency.
func (f *flags) grid(opts *bench.Options, command *string) error {
	if f.only != "" {
		for _, s := range strings.Split(f.only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(bench.Sections, s) {
				return fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(bench.Sections, ", "))
			}
			opts.Only = append(opts.Only, s)
		}
		*command += " -only " + f.only
	}
	if f.sizes != "" {
		v, err := bench.ParseSizes(f.sizes)
		if err != nil {
			return fmt.Errorf("-sizes: %w", err)
		}
		opts.Sizes, *command = v, *command+" -sizes "+f.sizes
	}
	if f.concurrency != "" {
		var v []int
		for _, s := range strings.Split(f.concurrency, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 10000 {
				return fmt.Errorf("-concurrency: %q is not a number from 1 to 10000", s)
			}
			v = append(v, n)
		}
		opts.Concurrency, *command = v, *command+" -concurrency "+f.concurrency
	}
	return nil
}

// reportPath is -o, defaulting to BENCHMARKS.md for a full run.
func (f *flags) reportPath() string {
	if f.out == "" && !f.quick {
		return "BENCHMARKS.md"
	}
	return f.out
}

// envFlag collects repeated KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}
