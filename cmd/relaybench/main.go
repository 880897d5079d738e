// Command relaybench measures relaygate end to end against its ceilings
// (issue 6) and writes the Markdown report, BENCHMARKS.md by default.
// Run it from the repository: the memory figures build ./cmd/gateway and
// the micro-benchmarks run go test.
//
//	go run ./cmd/relaybench            # full run, a few minutes, writes BENCHMARKS.md
//	go run ./cmd/relaybench --quick    # every scenario briefly, under a minute, for CI
//
// It exits non-zero only on a correctness failure (a receiver that did not
// get exactly what was accepted, a scenario that could not run).
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/relaygate/relaygate/internal/bench"
)

// notes are the hand-written profiling notes appended to the full report.
//
//go:embed notes.md
var notes string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "run every scenario briefly (under a minute, for CI); writes no file unless -o is given")
	out := fs.String("o", "", "report file (default BENCHMARKS.md for a full run, none for --quick; - for stdout)")
	window := fs.Duration("window", 0, "measurement window per point (default 5s, quick 300ms)")
	warmup := fs.Duration("warmup", 0, "warm-up before each window (default 1s, quick 100ms)")
	gatewayBin := fs.String("gateway-bin", "", `gateway binary for the memory figures ("" builds ./cmd/gateway; "-" skips them)`)
	benchtime := fs.String("benchtime", "", `go test -benchtime of the micro-benchmarks (default 1s; quick skips them; "-" skips them)`)
	repeat := fs.Int("repeat", 0, "runs per point, the median is reported (default 3, quick 1)")
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(bench.Sections, ", ")+" (default all)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (load generator, gateway, emulator and listener share the process) to this file")
	var gatewayEnv envFlag
	fs.Var(&gatewayEnv, "gateway-env", "KEY=VALUE added to the gateway process's environment for the memory figures (repeatable), e.g. GOMEMLIMIT=48MiB")
	openFraction := fs.Float64("open-fraction", 0, "fraction of the maximum rate the open loop offers (default 0.5, the target's)")
	sizes := fs.String("sizes", "", "comma-separated message sizes (default 100,4KiB,64KiB; quick 100,4KiB)")
	concurrency := fs.String("concurrency", "", "comma-separated closed-loop concurrency of the e2e and ceiling points (default 1,16,64,256; quick 1,64)")
	verbose := fs.Bool("v", false, "log the components' warnings to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: relaybench [flags]\n\nMeasures relaygate end to end, its HTTP and relay ceilings, the seed's dial-per-message way,\npool sizes, gateway memory and micro-benchmarks, on loopback, and writes a Markdown report.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("relaybench: unexpected arguments %q", fs.Args())
	}

	opts := bench.FullOptions()
	command := "go run ./cmd/relaybench"
	if *quick {
		opts = bench.QuickOptions()
		command += " --quick"
	}
	if *window > 0 {
		opts.Window = *window
		command += " -window " + window.String()
	}
	if *warmup > 0 {
		opts.Warmup = *warmup
		command += " -warmup " + warmup.String()
	}
	if *repeat > 0 {
		opts.Repeat = *repeat
		command += fmt.Sprintf(" -repeat %d", *repeat)
	}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(bench.Sections, s) {
				return fmt.Errorf("relaybench: -only: unknown section %q (want %s)", s, strings.Join(bench.Sections, ", "))
			}
			opts.Only = append(opts.Only, s)
		}
		command += " -only " + *only
	}
	if *openFraction > 0 {
		opts.OpenFraction = *openFraction
		command += fmt.Sprintf(" -open-fraction %g", *openFraction)
	}
	if *sizes != "" {
		v, err := bench.ParseSizes(*sizes)
		if err != nil {
			return fmt.Errorf("relaybench: -sizes: %w", err)
		}
		opts.Sizes = v
		command += " -sizes " + *sizes
	}
	if *concurrency != "" {
		var v []int
		for _, f := range strings.Split(*concurrency, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 10000 {
				return fmt.Errorf("relaybench: -concurrency: %q is not a number from 1 to 10000", f)
			}
			v = append(v, n)
		}
		opts.Concurrency = v
		command += " -concurrency " + *concurrency
	}
	opts.GatewayBin = *gatewayBin
	opts.GatewayEnv = gatewayEnv
	for _, kv := range gatewayEnv {
		command += " -gateway-env " + kv
	}
	switch *benchtime {
	case "":
	case "-":
		opts.MicroBenchtime = ""
	default:
		opts.MicroBenchtime = *benchtime
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelWarn
	}
	opts.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Progress = stderr

	path := *out
	if path == "" && !*quick {
		path = "BENCHMARKS.md"
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("relaybench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("relaybench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	var buf bytes.Buffer
	if err := rep.WriteMarkdown(&buf, command, notesFor(*quick)); err != nil {
		return err
	}
	switch path {
	case "":
	case "-":
		_, _ = stdout.Write(buf.Bytes())
	default:
		// Write then rename, so an interrupted write never leaves half a report.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("relaybench: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("relaybench: %w", err)
		}
	}
	fmt.Fprintf(stderr, "\nTargets:\n")
	for _, t := range rep.Targets() {
		met := "not measured"
		switch {
		case t.Known && t.Met:
			met = "met"
		case t.Known:
			met = "MISSED"
		}
		fmt.Fprintf(stderr, "  %-12s %s: %s\n", met, t.Name, t.Measured)
	}
	if path != "" && path != "-" {
		fmt.Fprintf(stderr, "report written to %s\n", path)
	}
	fmt.Fprintf(stderr, "relaybench finished in %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := rep.Check(); err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	return nil
}

// notesFor is the profiling notes for a full run; a quick run's report
// has none.
func notesFor(quick bool) string {
	if quick {
		return ""
	}
	return strings.TrimSpace(notes)
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
