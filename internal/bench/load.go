package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// doFunc performs one operation (an HTTP request, a pool send, a dial and
// write). worker is the index of the calling goroutine, for per-worker
// state. It must be safe for concurrent use by different workers.
type doFunc func(ctx context.Context, worker int) error

// Phases of a closed-loop run, read by the workers at each operation.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// loadResult is what a load run measured. Latencies and Measured cover the
// measurement window only; OK counts every successful operation, warmup
// included, so it can be compared with what the receiver counted in total.
type loadResult struct {
	Measured  int64 // operations started in the window that succeeded
	OK        int64 // successful operations, warmup included
	Errors    map[string]int64
	Window    time.Duration
	Latencies latencies
	// Open loop only.
	Service latencies // from the moment a worker began each operation (excludes the generator's own lateness)
	Offered float64   // requests per second asked for
	Late    int64     // arrivals the generator could not hand to a free worker on time (queued)
	Started time.Time
}

// errorCount is the number of failed operations in the window.
func (r *loadResult) errorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// errorSummary lists the failures by kind, most frequent first.
func (r *loadResult) errorSummary() string {
	if len(r.Errors) == 0 {
		return ""
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range r.Errors {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return strings.Join(parts, ", ")
}

// latencies is a set of measured durations.
type latencies []time.Duration

// summary is the percentiles of a set of latencies.
type summary struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// summarize sorts l in place and returns its percentiles (nearest rank).
func (l latencies) summarize() summary {
	if len(l) == 0 {
		return summary{}
	}
	slices.Sort(l)
	return summary{N: len(l), P50: l.pct(50), P90: l.pct(90), P99: l.pct(99), Max: l[len(l)-1]}
}

// pct is the p-th percentile of sorted l by the nearest-rank method.
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(l)) + 0.999999999)
	rank = max(1, min(rank, len(l)))
	return l[rank-1]
}

// errKind reduces an error to a short, stable label for the error table.
func errKind(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d %s", se.status, se.code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// statusError is an unexpected HTTP status, with the problem code if any.
type statusError struct {
	status int
	code   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d %s", e.status, e.code) }

// closedLoop runs concurrency workers, each doing one operation after the
// other, for warmup and then window. It returns after every worker has
// finished its last operation. mark, if not nil, is called right after the
// window opens (phaseMeasure) and right after it closes (phaseStop), so
// the caller can read a receiver's counters at the same instants.
func closedLoop(ctx context.Context, concurrency int, warmup, window time.Duration, do doFunc, mark func(phase int32)) loadResult {
	if mark == nil {
		mark = func(int32) {}
	}
	var phase atomic.Int32
	var ok atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type workerOut struct {
		lat  latencies
		errs map[string]int64
	}
	outs := make([]workerOut, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[w]
			out.lat = make(latencies, 0, 1024)
			for {
				ph := phase.Load()
				if ph == phaseStop || ctx.Err() != nil {
					return
				}
				start := time.Now()
				err := do(ctx, w)
				d := time.Since(start)
				if err == nil {
					ok.Add(1)
				}
				if ph != phaseMeasure {
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if out.errs == nil {
						out.errs = map[string]int64{}
					}
					out.errs[errKind(err)]++
					continue
				}
				out.lat = append(out.lat, d)
			}
		}()
	}
	wait(ctx, warmup)
	phase.Store(phaseMeasure)
	start := time.Now()
	mark(phaseMeasure)
	wait(ctx, window)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	mark(phaseStop)
	wg.Wait()

	res := loadResult{Window: elapsed, Started: start, OK: ok.Load(), Errors: map[string]int64{}}
	for _, o := range outs {
		res.Latencies = append(res.Latencies, o.lat...)
		for k, v := range o.errs {
			res.Errors[k] += v
		}
	}
	res.Measured = int64(len(res.Latencies))
	return res
}

// openLoop offers operations at rate per second for window, whatever the
// latency (no coordinated omission): each operation has an intended start
// time, and its latency is measured from that time, so waiting for a free
// worker counts. workers bounds the operations in flight.
func openLoop(ctx context.Context, rate float64, workers int, window time.Duration, do doFunc) loadResult {
	n := int(rate * window.Seconds())
	due := make(chan time.Time, n+1)
	var ok, late atomic.Int64
	type workerOut struct {
		lat, svc latencies
		errs     map[string]int64
	}
	outs := make([]workerOut, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[w]
			for t := range due {
				if ctx.Err() != nil {
					continue
				}
				began := time.Now()
				if began.Sub(t) > time.Millisecond {
					late.Add(1)
				}
				err := do(ctx, w)
				end := time.Now()
				d := end.Sub(t)
				if err != nil {
					if out.errs == nil {
						out.errs = map[string]int64{}
					}
					out.errs[errKind(err)]++
					continue
				}
				ok.Add(1)
				out.lat = append(out.lat, d)
				out.svc = append(out.svc, end.Sub(began))
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	pace := newPacer(ctx, interval)
	defer pace.stop()
	for i := 0; i < n && ctx.Err() == nil; {
		now := time.Now()
		// Hand out every arrival that is due; sleep until the next one.
		for ; i < n; i++ {
			t := start.Add(time.Duration(i+1) * interval)
			if t.After(now) {
				pace.wait(t)
				break
			}
			due <- t
		}
	}
	close(due)
	wg.Wait()
	res := loadResult{Window: time.Since(start), Started: start, OK: ok.Load(), Late: late.Load(), Offered: rate, Errors: map[string]int64{}}
	for _, o := range outs {
		res.Latencies = append(res.Latencies, o.lat...)
		res.Service = append(res.Service, o.svc...)
		for k, v := range o.errs {
			res.Errors[k] += v
		}
	}
	res.Measured = int64(len(res.Latencies))
	return res
}

// pacer is openLoop's clock: wait returns at t (or at the next tick of
// a periodic clock whose ticks fall on the arrivals), or at once once the
// context the pacer was made with is done.
type pacer interface {
	wait(t time.Time)
	stop()
}

// timerPacer paces with a Go timer: up to a millisecond or two late (see
// the Linux newPacer).
type timerPacer struct {
	ctx context.Context
	t   *time.Timer
}

func newTimerPacer(ctx context.Context) pacer { return &timerPacer{ctx, time.NewTimer(time.Hour)} }

func (p *timerPacer) wait(t time.Time) {
	p.t.Reset(time.Until(t))
	select {
	case <-p.t.C:
	case <-p.ctx.Done():
	}
}

func (p *timerPacer) stop() { p.t.Stop() }

// wait waits d or until ctx is done. Load phases are timed, not
// synchronised: this is the benchmark's clock.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// newHTTPClient is the load generator's client: keep-alive connections,
// at least conns of them idle per host, no compression, no proxy.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        0, // no overall limit
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		Timeout: 30 * time.Second,
	}
}
