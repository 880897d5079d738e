package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Processes is the separate-process section (issue 14): every front end
// runs as its own process, driven by a load generator in another process
// (relaybench itself, as a child), and its CPU time is read from
// /proc/PID/stat at the instants the measurement window opens and closes.
// The emulator and listener stay in the benchmark's process, whose own CPU
// is reported as the relay side.
type Processes struct {
	Conc      int // closed-loop connections of every load child
	Size      int // JSON body size of a single message
	BatchSize int // items per POST /messages:batch
	Rows      []ProcRow
}

// Row keys of the Processes section.
const (
	procBare      = "bare"
	procPlainWarn = "plain-warn"
	procPlainInfo = "plain-info"
	procRequest   = "request"
	procBatch     = "batch"
	procOpen      = "open"
	procBareOpen  = "bare-open"
	// The open loop at half the target's rate.
	procOpenLow     = "open-low"
	procBareOpenLow = "bare-open-low"
)

// ProcRow is one front end under one load.
type ProcRow struct {
	Key, Name string
	NA        string // why the row was not measured, if it was not

	Requests  float64       // successful requests per second in the window
	Messages  float64       // messages per second (the listener's count where there is one)
	CPU       float64       // the front end's CPU in the window, in cores
	CPUPerReq time.Duration // the front end's CPU per request
	CPUPerMsg time.Duration
	RelayCPU  time.Duration // the benchmark process (emulator + listener) per message
	P50, P99  time.Duration
	Max       time.Duration
	SvcP99    time.Duration // open loop: p99 from the request's write
	Late      int64         // open loop: arrivals the generator wrote over 1 ms late
	Offered   float64       // open loop only
	Errors    int64
	ErrorText string
	Runs      []float64 // requests/s of every run when repeated; this row is the median
	// Rounds are every run when repeated, in the order the jobs took
	// turns: a ratio of two rows is best taken round by round.
	Rounds []ProcRun
}

// ProcRun is what one run of a repeated row measured.
type ProcRun struct {
	Messages  float64
	CPUPerReq time.Duration
	CPUPerMsg time.Duration
}

// procTarget is a front end process being measured.
type procTarget struct {
	pid  int
	url  string
	sink *sink // the listener's count; nil for the bare server
}

// runProcesses measures the section with the gateway binary bin and the
// relaybench binary r.opts.ChildBin.
func (r *runner) runProcesses(ctx context.Context, bin string) (*Processes, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("needs /proc (Linux)")
	}
	const conc, size, batch = 64, 100, 100
	ps := &Processes{Conc: conc, Size: size, BatchSize: batch}
	body := string(jsonBody(size))

	bare, stopBare, err := startBare(ctx, r.opts.ChildBin)
	if err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	defer stopBare()
	warn, stopWarn, err := r.procGateway(ctx, bin, "GATEWAY_LOG_LEVEL=warn")
	if err != nil {
		return ps, err
	}
	defer stopWarn()
	info, stopInfo, err := r.procGateway(ctx, bin)
	if err != nil {
		return ps, err
	}
	defer stopInfo()

	// The floor and the two log levels round-robin: this machine's speed
	// drifts, and a ratio of runs minutes apart would measure the drift.
	plain := LoadSpec{Body: body, Conc: conc, Want: http.StatusAccepted}
	pb, pw, pi, rq := plain, plain, plain, plain
	pb.URL, pw.URL, pi.URL = bare.url+"/messages", warn.url+"/messages", info.url+"/messages"
	rq.URL, rq.Want = warn.url+"/messages?delivery=request", http.StatusOK
	rows := r.procRepeat(ctx, []procJob{
		{procBare, "bare net/http server (reads the body, answers 202)", bare, pb},
		{procPlainWarn, "gateway, POST /messages, GATEWAY_LOG_LEVEL=warn", warn, pw},
		{procPlainInfo, "gateway, POST /messages, default log level (info)", info, pi},
		{procRequest, "gateway, POST /messages?delivery=request (warn)", warn, rq},
	})
	ps.add(rows...)

	bname := fmt.Sprintf("gateway, POST /messages:batch of %d (warn)", batch)
	if na := r.probeBatch(ctx, warn); na != "" {
		ps.add(ProcRow{Key: procBatch, Name: bname, NA: na})
	} else {
		bs := LoadSpec{URL: warn.url + "/messages:batch", Body: string(batchBody(batch, size)), Conc: conc, Want: http.StatusOK, Batch: true}
		ps.add(r.procMeasure(ctx, procBatch, bname, warn, bs))
	}

	if top := ps.row(procPlainInfo); top != nil && top.Messages > 0 {
		// The target's point, then half of it: where the open loop's p99
		// stands once the machine is no longer near saturation.
		r.procOpenLoop(ctx, ps, info, plain, top.Messages, r.opts.OpenFraction, procOpen, procBareOpen)
		r.procOpenLoop(ctx, ps, info, plain, top.Messages, r.opts.OpenFraction/2, procOpenLow, procBareOpenLow)
	}
	return ps, nil
}

// procOpenLoop offers fraction of top requests/s to the gateway info in an
// open loop, then the same to a bare server: the latency floor of this
// machine and load generator at that rate.
func (r *runner) procOpenLoop(ctx context.Context, ps *Processes, info procTarget, plain LoadSpec, top, fraction float64, key, bareKey string) {
	rate, pct := top*fraction, 100*fraction
	op := plain
	op.URL, op.Conc, op.Rate = info.url+"/messages", 256, rate
	row := r.procMeasureWindow(ctx, key, fmt.Sprintf("gateway (info), open loop at %.0f%% of its maximum", pct), info, op, r.opts.OpenWindow)
	row.Offered = rate
	ps.add(row)
	bare, stopBare, err := startBare(ctx, r.opts.ChildBin)
	if err != nil {
		return
	}
	defer stopBare()
	op.URL = bare.url + "/messages"
	brow := r.procMeasureWindow(ctx, bareKey, fmt.Sprintf("bare net/http server, open loop at the same rate (%.0f%%)", pct), bare, op, r.opts.OpenWindow)
	brow.Offered = rate
	ps.add(brow)
}

func (ps *Processes) add(rows ...ProcRow) { ps.Rows = append(ps.Rows, rows...) }

// row is the row with key, or nil.
func (ps *Processes) row(key string) *ProcRow {
	if ps == nil {
		return nil
	}
	for i := range ps.Rows {
		if ps.Rows[i].Key == key && ps.Rows[i].NA == "" {
			return &ps.Rows[i]
		}
	}
	return nil
}

// procJob is one row of a round-robin group.
type procJob struct {
	key, name string
	t         procTarget
	spec      LoadSpec
}

// procRepeat measures the jobs ProcRounds times round-robin and returns each
// job's run with the median request rate, every run's rate in Runs.
func (r *runner) procRepeat(ctx context.Context, jobs []procJob) []ProcRow {
	runs := make([][]ProcRow, len(jobs))
	for range max(1, r.opts.ProcRounds) {
		for i, j := range jobs {
			runs[i] = append(runs[i], r.procMeasure(ctx, j.key, j.name, j.t, j.spec))
		}
	}
	out := make([]ProcRow, len(jobs))
	for i, rs := range runs {
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b ProcRow) int { return cmp.Compare(a.Requests, b.Requests) })
		out[i] = sorted[(len(sorted)-1)/2]
		out[i].Runs, out[i].Rounds = nil, nil
		for _, x := range rs {
			out[i].Runs = append(out[i].Runs, x.Requests)
			out[i].Rounds = append(out[i].Rounds, ProcRun{Messages: x.Messages, CPUPerReq: x.CPUPerReq, CPUPerMsg: x.CPUPerMsg})
		}
	}
	return out
}

// procMeasure runs one closed-loop load child against t (Warmup, Window).
func (r *runner) procMeasure(ctx context.Context, key, name string, t procTarget, spec LoadSpec) ProcRow {
	return r.procMeasureWindow(ctx, key, name, t, spec, r.opts.Window)
}

// procMeasureWindow runs one load child against t for window and reads
// t's CPU, the benchmark process's CPU and the listener's count when the
// window opens and closes.
func (r *runner) procMeasureWindow(ctx context.Context, key, name string, t procTarget, spec LoadSpec, window time.Duration) ProcRow {
	row := ProcRow{Key: key, Name: name}
	spec.Warmup, spec.Window = r.opts.Warmup, window
	var base int64
	if t.sink != nil {
		base = t.sink.msgs.Load()
	}
	var cpu0, cpu1, self0, self1 time.Duration
	var n0, n1 int64
	res, err := runLoadChild(ctx, r.opts.ChildBin, spec, func(line string) {
		c, _ := procCPU(t.pid)
		s := selfCPU()
		var n int64
		if t.sink != nil {
			n = t.sink.msgs.Load()
		}
		if line == lineMeasure {
			cpu0, self0, n0 = c, s, n
		} else {
			cpu1, self1, n1 = c, s, n
		}
	})
	if err != nil {
		row.NA = err.Error()
		r.fail("%s: %v", name, err)
		return row
	}
	secs := res.Window.Seconds()
	row.Requests = float64(res.Requests) / secs
	row.Messages = row.Requests
	if spec.Batch {
		row.Messages = row.Requests * float64(r.procBatchItems(spec))
	}
	if t.sink != nil {
		row.Messages = float64(n1-n0) / secs
		if !waitFor(ctx, r.opts.DrainTimeout, func() bool { return t.sink.msgs.Load()-base >= res.Messages }) ||
			t.sink.msgs.Load()-base != res.Messages {
			r.fail("%s: delivered %d != accepted %d", name, t.sink.msgs.Load()-base, res.Messages)
		}
	}
	row.CPU = (cpu1 - cpu0).Seconds() / secs
	row.CPUPerReq = perOp(cpu1-cpu0, row.Requests*secs)
	row.CPUPerMsg = perOp(cpu1-cpu0, row.Messages*secs)
	if t.sink != nil {
		row.RelayCPU = perOp(self1-self0, row.Messages*secs)
	}
	row.P50, row.P99, row.Max, row.SvcP99, row.Late = res.P50, res.P99, res.Max, res.SvcP99, res.Late
	for k, v := range res.Errors {
		row.Errors += v
		row.ErrorText += fmt.Sprintf("%d× %s ", v, k)
	}
	row.ErrorText = strings.TrimSpace(row.ErrorText)
	r.progress("%-44s %10.0f req/s %10.0f msg/s  CPU %6.1f µs/msg (%.2f cores)  p50 %-9s p99 %-9s errors %d",
		name, row.Requests, row.Messages, float64(row.CPUPerMsg)/1e3, row.CPU, fmtDur(row.P50), fmtDur(row.P99), row.Errors)
	return row
}

// procBatchItems is the number of items in a batch spec's body.
func (r *runner) procBatchItems(spec LoadSpec) int {
	return strings.Count(spec.Body, `{"message":`)
}

func perOp(d time.Duration, n float64) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(float64(d) / n)
}

// procGateway starts a gateway process (default pool) on a fresh
// endpoint, with env added to r.opts.GatewayEnv.
func (r *runner) procGateway(ctx context.Context, bin string, env ...string) (procTarget, func(), error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return procTarget{}, nil, err
	}
	gw, err := startChild(ctx, bin, ep, defaultPoolSize, append(slices.Clone(r.opts.GatewayEnv), env...))
	if err != nil {
		ep.close()
		return procTarget{}, nil, err
	}
	return procTarget{pid: gw.cmd.Process.Pid, url: gw.url, sink: &ep.sink}, func() { gw.stop(); ep.close() }, nil
}

// probeBatch reports why POST /messages:batch cannot be measured on the
// gateway t ("" when it answers one item with 200, once the listener has
// counted that item, so that it is not counted in the next run).
func (r *runner) probeBatch(ctx context.Context, t procTarget) string {
	before := t.sink.msgs.Load()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/messages:batch", bytes.NewReader(batchBody(1, 100)))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("n/a: POST /messages:batch answered %d (the endpoint is not in this gateway)", resp.StatusCode)
	}
	waitFor(ctx, r.opts.DrainTimeout, func() bool { return t.sink.msgs.Load() > before })
	return ""
}

// startBare starts relaybench -serve-bare on a free loopback port.
func startBare(ctx context.Context, self string) (procTarget, func(), error) {
	cmd := exec.Command(self, "-serve-bare", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return procTarget{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		return procTarget{}, nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		stop()
		return procTarget{}, nil, fmt.Errorf("no address from %s -serve-bare: %q %v", self, line, err)
	}
	return procTarget{pid: cmd.Process.Pid, url: "http://" + addr}, stop, nil
}

// runLoadChild runs relaybench -load-child with spec, calling mark at the
// child's protocol lines, and returns its result.
func runLoadChild(ctx context.Context, self string, spec LoadSpec, mark func(line string)) (LoadResult, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return LoadResult{}, err
	}
	cmd := exec.CommandContext(ctx, self, "-load-child", string(b))
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return LoadResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return LoadResult{}, err
	}
	res, rerr := readLoadOutput(out, mark)
	werr := cmd.Wait()
	if rerr != nil || werr != nil {
		return res, fmt.Errorf("load child: %w: %s", errors.Join(rerr, werr), stderr.String())
	}
	return res, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procCPU is pid's user plus system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
