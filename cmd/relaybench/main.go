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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
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

// run parses the flags, runs the benchmark, writes the report and
// prints the targets; it fails only on a correctness failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	if done, err := runChild(ctx, f, stdout); done {
		return err
	}
	opts, command, err := f.options(stderr)
	if err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	if f.cpuprofile != "" {
		stop, err := startCPUProfile(f.cpuprofile)
		if err != nil {
			return fmt.Errorf("relaybench: %w", err)
		}
		defer stop()
	}
	start := time.Now()
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	var buf bytes.Buffer
	if err := rep.WriteMarkdown(&buf, command, notesFor(f.quick)); err != nil {
		return err
	}
	path := f.reportPath()
	if err := writeReport(path, buf.Bytes(), stdout); err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	printTargets(stderr, rep)
	if path != "" && path != "-" {
		fmt.Fprintf(stderr, "report written to %s\n", path)
	}
	fmt.Fprintf(stderr, "relaybench finished in %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := rep.Check(); err != nil {
		return fmt.Errorf("relaybench: %w", err)
	}
	return nil
}

// runChild runs the hidden child-process modes of the separate-process
// section; done is false when neither was asked for.
func runChild(ctx context.Context, f *flags, stdout io.Writer) (done bool, err error) {
	switch {
	case f.serveBare != "":
		return true, bench.ServeBare(ctx, f.serveBare, stdout)
	case f.loadChild != "":
		var spec bench.LoadSpec
		if err := json.Unmarshal([]byte(f.loadChild), &spec); err != nil {
			return true, fmt.Errorf("relaybench: -load-child: %w", err)
		}
		return true, bench.RunLoad(ctx, spec, stdout)
	}
	return false, nil
}

// startCPUProfile profiles the whole process into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeReport writes report to path: nowhere for "", stdout for "-", else
// a file, written then renamed so an interruption never leaves half a
// report.
func writeReport(path string, report []byte, stdout io.Writer) error {
	switch path {
	case "":
		return nil
	case "-":
		_, err := stdout.Write(report)
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, report, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// printTargets lists each target's verdict and figures.
func printTargets(w io.Writer, rep *bench.Report) {
	fmt.Fprintf(w, "\nTargets:\n")
	for _, t := range rep.Targets() {
		met := "not measured"
		switch {
		case t.Known && t.Met:
			met = "met"
		case t.Known:
			met = "MISSED"
		}
		fmt.Fprintf(w, "  %-12s %s: %s\n", met, t.Name, t.Measured)
	}
}

// notesFor is the profiling notes for a full run; a quick run's report
// has none.
func notesFor(quick bool) string {
	if quick {
		return ""
	}
	return strings.TrimSpace(notes)
}
