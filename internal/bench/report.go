package bench

import (
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Target is one of issue 6's targets, judged on a report.
type Target struct {
	Name     string
	Measured string
	Met      bool
	Known    bool // false when the report lacks the figures to judge
}

// fmtDur formats d in milliseconds ("0.412 ms").
func fmtDur(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func find(pts []Point, conc, size int) (Point, bool) {
	for _, p := range pts {
		if p.Concurrency == conc && p.Size == size {
			return p, true
		}
	}
	return Point{}, false
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Targets judges issue 6's targets on the report.
func (rep *Report) Targets() []Target {
	var ts []Target

	t := Target{Name: "end to end ≥ 0.5 × HTTP ceiling (c=64, 100 B)"}
	if e, ok := find(rep.E2E, 64, 100); ok {
		if c, ok := find(rep.Ceiling, 64, 100); ok {
			r := ratio(e.Rate, c.Rate)
			t.Measured, t.Met, t.Known = fmt.Sprintf("%.0f/s ÷ %.0f/s = %.2f", e.Rate, c.Rate, r), r >= 0.5, true
		}
	}
	ts = append(ts, t)

	t = Target{Name: "pooled ≥ 50 × dial-per-message (100 B, every concurrency)"}
	var parts []string
	allMet := true
	for _, d := range rep.Dial {
		if pl, ok := find(rep.Pooled, d.Concurrency, 100); ok && d.Size == 100 {
			r := ratio(pl.Rate, d.Rate)
			parts = append(parts, fmt.Sprintf("c=%d: pool.Send %.0f/s ÷ dial %.0f/s = %.1f×", d.Concurrency, pl.Rate, d.Rate, r))
			allMet = allMet && r >= 50
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met, t.Known = strings.Join(parts, "; "), allMet, true
	}
	ts = append(ts, t)

	t = Target{Name: "emulator relay ≥ 0.5 × direct WebSocket (every size)"}
	parts = nil
	allMet = true
	for _, o := range rep.OneSocket {
		for _, d := range rep.Direct {
			if d.Size == o.Size {
				r := ratio(o.Rate, d.Rate)
				parts = append(parts, fmt.Sprintf("%s %.2f", sizeName(o.Size), r))
				allMet = allMet && r >= 0.5
			}
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met, t.Known = strings.Join(parts, ", "), allMet, true
	}
	ts = append(ts, t)

	t = Target{Name: "p99 ≤ 2 ms at half the maximum rate (open loop, 100 B)"}
	if o := rep.OpenLoop; o != nil {
		t.Measured = fmt.Sprintf("p99 %s at %.0f/s offered, %.0f%% of %.0f/s (p50 %s, max %s; from the worker's start p99 %s)", fmtDur(o.Latency.P99), o.Offered, 100*ratio(o.Offered, o.MaxRate), o.MaxRate, fmtDur(o.Latency.P50), fmtDur(o.Latency.Max), fmtDur(o.Service.P99))
		if c := o.Ceiling; c != nil {
			t.Measured += fmt.Sprintf("; HTTP ceiling at the same rate: p99 %s", fmtDur(c.Latency.P99))
		}
		t.Met, t.Known = o.Latency.P99 <= 2*time.Millisecond && o.Errors == 0, rep.Options.OpenFraction == 0.5
	}
	if m := rep.Memory; m != nil && m.ProcessOpen.Offered > 0 {
		po := m.ProcessOpen
		if t.Measured != "" {
			t.Measured += "; "
		}
		t.Measured += fmt.Sprintf("gateway process: p99 %s at %.0f/s, half of %.0f/s", fmtDur(po.Latency.P99), po.Offered, po.MaxRate)
	}
	ts = append(ts, t)

	t = Target{Name: "gateway RSS ≤ 64 MiB with 1,000 concurrent clients"}
	if m := rep.Memory; m != nil {
		peak := max(m.LoadPeakKiB, m.LoadHWMKiB)
		t.Measured = fmt.Sprintf("peak %.1f MiB with %d clients (idle %.1f MiB)", float64(peak)/1024, m.Clients, float64(m.IdleKiB)/1024)
		t.Met, t.Known = peak <= 64<<10 && m.Clients >= 1000, m.Clients >= 1000
		if m.Clients < 1000 {
			t.Measured += "; quick run, not judged"
		}
	}
	ts = append(ts, t)

	t = Target{Name: "≤ 48 KiB RSS per idle pooled connection (issue 14; issue 6 asked for 64)"}
	if m := rep.Memory; m != nil {
		t.Measured = fmt.Sprintf("%.1f KiB (pool %d → %d: %d → %d KiB)", m.PerConnKiB(), m.SmallPool, m.LargePool, m.SmallPoolKiB, m.LargePoolKiB)
		t.Met, t.Known = m.PerConnKiB() <= 48, true
	}
	ts = append(ts, t)

	ts = append(ts, rep.Processes.targets()...)

	t = Target{Name: "zero allocations per message in the pool's send path ([]byte payload)"}
	parts = nil
	allMet = true
	for _, m := range rep.Micro {
		if strings.HasPrefix(m.Name, "BenchmarkPoolSend") && m.AllocsPerOp >= 0 {
			parts = append(parts, fmt.Sprintf("%s %d allocs/op", strings.TrimPrefix(m.Name, "Benchmark"), m.AllocsPerOp))
			allMet = allMet && m.AllocsPerOp == 0
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met, t.Known = strings.Join(parts, ", "), allMet, true
	}
	ts = append(ts, t)
	return ts
}

// targets judges issue 14's targets on the separate-process section.
func (ps *Processes) targets() []Target {
	bare, warn, info := ps.row(procBare), ps.row(procPlainWarn), ps.row(procPlainInfo)
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

	t1 := Target{Name: "gateway CPU per message ≤ 2 × bare net/http CPU per request (separate processes)"}
	if bare != nil && warn != nil && bare.CPUPerReq > 0 {
		r, each := roundRatio(warn, bare, func(w, b ProcRun) float64 { return ratio(float64(w.CPUPerMsg), float64(b.CPUPerReq)) })
		t1.Measured = fmt.Sprintf("%s (warn level) ÷ %s: %.2f×%s", us(warn.CPUPerMsg), us(bare.CPUPerReq), r, each("×"))
		t1.Met, t1.Known = r <= 2, true
	}
	t2 := Target{Name: "default log level (info) costs ≤ 5 % of the throughput at warn"}
	if warn != nil && info != nil && warn.Messages > 0 {
		cost, each := roundRatio(info, warn, func(i, w ProcRun) float64 { return 100 * (1 - ratio(i.Messages, w.Messages)) })
		t2.Measured = fmt.Sprintf("info %.0f/s vs warn %.0f/s: %.1f %%%s", info.Messages, warn.Messages, cost, each(" %"))
		t2.Met, t2.Known = cost <= 5, true
	}
	t3 := Target{Name: "?delivery=request ≥ 0.5 × plain sends (same concurrency, separate processes)"}
	if rq := ps.row(procRequest); rq != nil && warn != nil {
		r, each := roundRatio(rq, warn, func(q, w ProcRun) float64 { return ratio(q.Messages, w.Messages) })
		t3.Measured = fmt.Sprintf("%.0f/s ÷ %.0f/s: %.2f%s (p50 %s)", rq.Messages, warn.Messages, r, each(""), fmtDur(rq.P50))
		t3.Met, t3.Known = r >= 0.5, true
	}
	t4 := Target{Name: "POST /messages:batch of 100: messages/s ≥ 5 × single-message requests/s"}
	if b := ps.row(procBatch); b != nil && warn != nil {
		r := ratio(b.Messages, warn.Requests)
		t4.Measured = fmt.Sprintf("%.0f msg/s ÷ %.0f req/s = %.1f×", b.Messages, warn.Requests, r)
		t4.Met, t4.Known = r >= 5, true
	} else if ps != nil {
		for _, row := range ps.Rows {
			if row.Key == procBatch {
				t4.Measured = row.NA
			}
		}
	}
	t5 := Target{Name: "p99 ≤ 2 ms at half the maximum rate (gateway process, separate load generator)"}
	if o := ps.row(procOpen); o != nil && info != nil {
		t5.Measured = fmt.Sprintf("p99 %s at %.0f/s offered, half of %.0f/s (p50 %s)", fmtDur(o.P99), o.Offered, info.Messages, fmtDur(o.P50))
		t5.Met, t5.Known = o.P99 <= 2*time.Millisecond && o.Errors == 0, true
		if b := ps.row(procBareOpen); b != nil {
			t5.Measured += fmt.Sprintf("; the bare net/http server at the same rate and load generator: p99 %s (p50 %s)", fmtDur(b.P99), fmtDur(b.P50))
		}
		if lo, blo := ps.row(procOpenLow), ps.row(procBareOpenLow); lo != nil && blo != nil {
			t5.Measured += fmt.Sprintf("; at half that rate (%.0f/s): gateway p99 %s, bare server p99 %s", lo.Offered, fmtDur(lo.P99), fmtDur(blo.P99))
		}
	}
	return []Target{t1, t2, t3, t4, t5}
}

// roundRatio is f of two rows that took turns, round by round, and the
// median over the rounds: this machine's speed drifts within minutes, and
// a ratio of runs from the same round sees the least of that drift. Rows
// without rounds of the same length give f of the rows themselves. each
// formats the rounds' values for the report ("" for one round).
func roundRatio(a, b *ProcRow, f func(a, b ProcRun) float64) (float64, func(unit string) string) {
	if len(a.Rounds) < 2 || len(a.Rounds) != len(b.Rounds) {
		v := f(ProcRun{a.Messages, a.CPUPerReq, a.CPUPerMsg}, ProcRun{b.Messages, b.CPUPerReq, b.CPUPerMsg})
		return v, func(string) string { return "" }
	}
	vals := make([]float64, len(a.Rounds))
	for i := range a.Rounds {
		vals[i] = f(a.Rounds[i], b.Rounds[i])
	}
	each := func(unit string) string {
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprintf("%.2f%s", v, unit)
		}
		return fmt.Sprintf(", the median of the rounds' %s", strings.Join(parts, ", "))
	}
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	return sorted[(len(sorted)-1)/2], each
}

//go:embed report.md.tmpl
var reportText string

// reportTemplate lays out BENCHMARKS.md; the functions format cells.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur": fmtDur, "rateCell": rateCell, "errCell": errCell, "deliveredCell": deliveredCell, "orDash": orDash,
	"sizeName": sizeName, "ratio": ratio, "findPoint": findPoint, "bySize": bySize, "met": metCell,
	"percent":    func(f float64) float64 { return 100 * f },
	"mib":        func(kib int64) float64 { return float64(kib) / 1024 },
	"sub":        func(a, b int) int { return a - b },
	"join":       strings.Join,
	"trimModule": func(pkg string) string { return strings.TrimPrefix(pkg, "github.com/relaygate/relaygate/") },
	"us":         func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) },
	"mbps":       mbpsCell, "pairsPerConn": pairsPerConn, "perConn": perConnOf, "runtimeRows": runtimeRowsOf,
}).Parse(reportText))

// reportData is what the template reads: the report and the figures
// that are not fields of it.
type reportData struct {
	*Report
	Command, Notes  string
	Elapsed         time.Duration
	DefaultPoolSize int
	Sections        []string
}

// DialProblems are the dial and pooled points with errors or a
// delivered/accepted mismatch.
func (d reportData) DialProblems() []Point {
	var out []Point
	for _, p := range append(append([]Point{}, d.Dial...), d.Pooled...) {
		if p.Errors > 0 || p.Delivered != p.Accepted {
			out = append(out, p)
		}
	}
	return out
}

// WriteMarkdown writes the report as Markdown (BENCHMARKS.md, laid out by
// report.md.tmpl). notes, if not empty, is appended verbatim (the
// hand-written profiling notes).
func (rep *Report) WriteMarkdown(w io.Writer, command, notes string) error {
	return reportTemplate.Execute(w, reportData{
		Report: rep, Command: command, Notes: strings.TrimSpace(notes),
		Elapsed:         rep.Finished.Sub(rep.Started).Round(time.Second),
		DefaultPoolSize: defaultPoolSize, Sections: Sections,
	})
}

// findPoint is the point of pts at conc and size, or a zero Point.
func findPoint(pts []Point, conc, size int) Point {
	p, _ := find(pts, conc, size)
	return p
}

// bySize is the last point of pts of the given size, or a zero Point.
func bySize(pts []Point, size int) Point {
	var p Point
	for _, x := range pts {
		if x.Size == size {
			p = x
		}
	}
	return p
}

// metCell is a target's verdict.
func metCell(t Target) string {
	switch {
	case t.Known && t.Met:
		return "✅ yes"
	case t.Known:
		return "❌ **no**"
	case t.Measured != "":
		return "–"
	}
	return "not measured"
}

func mbpsCell(v float64) string {
	if v > 0 {
		return fmt.Sprintf("%.1f", v)
	}
	return "–"
}

// pairsPerConn is the per-connection KiB of every pool-size pair.
func pairsPerConn(m *Memory) string {
	var each []string
	for _, pr := range m.Pairs {
		each = append(each, fmt.Sprintf("%.1f", float64(pr[1]-pr[0])/float64(m.LargePool-m.SmallPool)))
	}
	return strings.Join(each, ", ")
}

// perConnView is the runtime cost of one idle pooled connection.
type perConnView struct{ Goroutines, StackKiB, HeapKiB float64 }

// perConnOf is nil when the scrapes lack the goroutine count.
func perConnOf(m *Memory) *perConnView {
	g, ok := m.perConnRuntime("go_goroutines")
	if !ok {
		return nil
	}
	st, _ := m.perConnRuntime("go_memstats_stack_inuse_bytes")
	hp, _ := m.perConnRuntime("go_memstats_heap_inuse_bytes")
	return &perConnView{g, st / 1024, hp / 1024}
}

// runtimeRow is one Go collector series, idle and under load.
type runtimeRow struct{ Name, Idle, Load string }

// runtimeRowsOf lists the runtime series either scrape has (none: the
// report shows no table).
func runtimeRowsOf(m *Memory) []runtimeRow {
	var rows []runtimeRow
	for _, name := range runtimeMetrics {
		iv, iok := m.IdleRuntime[name]
		lv, lok := m.LoadRuntime[name]
		if iok || lok {
			rows = append(rows, runtimeRow{name, runtimeCell(name, iv, iok), runtimeCell(name, lv, lok)})
		}
	}
	return rows
}

// rateCell is p's rate, with the range of its runs when it was repeated:
// "21403 (17106–22010)".
func rateCell(p Point) string {
	if len(p.Runs) < 2 {
		return fmt.Sprintf("%.0f", p.Rate)
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", p.Rate, slices.Min(p.Runs), slices.Max(p.Runs))
}

// runtimeCell formats a Go collector value: bytes in MiB, others as is.
func runtimeCell(name string, v float64, ok bool) string {
	switch {
	case !ok:
		return "–"
	case strings.HasSuffix(name, "_bytes") && v >= 1<<62:
		return "none"
	case strings.HasSuffix(name, "_bytes"):
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func errCell(p Point) string {
	if p.Errors == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", p.Errors, p.ErrorText)
}

func deliveredCell(p Point) string {
	switch {
	case p.Delivered < 0:
		return "–"
	case p.Delivered == p.Accepted:
		return fmt.Sprintf("yes (%d)", p.Accepted)
	}
	return fmt.Sprintf("**NO: %d of %d**", p.Delivered, p.Accepted)
}
