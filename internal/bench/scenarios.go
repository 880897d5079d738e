package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

// Point is one measured configuration.
type Point struct {
	Concurrency int
	Size        int // message size in bytes (the HTTP body for HTTP scenarios)
	PoolSize    int // 0 where no pool is involved

	Accepted  int64   // successful sends of this run, warmup included
	Delivered int64   // messages the receiver counted during this run, warmup included; -1 where there is no receiver
	Rate      float64 // per second in the window: delivered where there is a receiver, else accepted
	Window    time.Duration
	Latency   summary
	Runs      []float64 // the rate of every run when the point was repeated; this one is the median
	Errors    int64     // failed operations in the window
	ErrorText string    // failures by kind
	// Open loop only.
	Offered        float64
	Late           int64
	Service        summary // latency from the moment a worker began the request
	MaxRate        float64 // the closed-loop rate whose half was offered
	MaxConcurrency int     // the concurrency MaxRate was measured at
	Ceiling        *Point  // the HTTP ceiling at the same offered rate
}

// MiBps is the payload throughput.
func (p Point) MiBps() float64 { return p.Rate * float64(p.Size) / (1 << 20) }

// jsonBody is a POST /messages body of exactly size bytes (at least 16):
// {"message":"aaaa…"}.
func jsonBody(size int) []byte {
	const prefix, suffix = `{"message":"`, `"}`
	n := max(size-len(prefix)-len(suffix), 1)
	b := make([]byte, 0, len(prefix)+n+len(suffix))
	b = append(b, prefix...)
	b = append(b, bytes.Repeat([]byte{'a'}, n)...)
	return append(b, suffix...)
}

// postMessage returns a doFunc that POSTs body to url as application/json
// and expects 202.
func postMessage(client *http.Client, url string, body []byte) doFunc {
	return func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			var p struct {
				Code string `json:"code"`
			}
			_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p)
			_, _ = io.Copy(io.Discard, resp.Body)
			return &statusError{status: resp.StatusCode, code: p.Code}
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
}

// counted runs a closed loop against a receiver counted by k and returns
// the point, with the delivered rate read from k at the window's edges.
// After the load it waits for the receiver to catch up and records a
// failure if it did not get exactly what was accepted.
func (r *runner) counted(ctx context.Context, name string, k *sink, conc int, do doFunc) Point {
	// base: what k counted before (an endpoint may serve several runs).
	base := k.msgs.Load()
	var atStart, atEnd int64
	res := closedLoop(ctx, conc, r.opts.Warmup, r.opts.Window, do, func(ph int32) {
		switch ph {
		case phaseMeasure:
			atStart = k.msgs.Load()
		case phaseStop:
			atEnd = k.msgs.Load()
		}
	})
	waitFor(ctx, r.opts.DrainTimeout, func() bool { return k.msgs.Load()-base >= res.OK })
	p := pointOf(res, conc)
	p.Delivered = k.msgs.Load() - base
	p.Rate = float64(atEnd-atStart) / res.Window.Seconds()
	r.check(name, p)
	return p
}

func pointOf(res loadResult, conc int) Point {
	return Point{
		Concurrency: conc,
		Accepted:    res.OK,
		Delivered:   -1,
		Rate:        float64(res.Measured) / res.Window.Seconds(),
		Window:      res.Window,
		Latency:     res.Latencies.summarize(),
		Errors:      res.errorCount(),
		ErrorText:   res.errorSummary(),
		Offered:     res.Offered,
		Late:        res.Late,
		Service:     res.Service.summarize(),
	}
}

// check records a correctness failure when the receiver did not count
// exactly the accepted messages.
func (r *runner) check(name string, p Point) {
	if p.Delivered >= 0 && p.Delivered != p.Accepted {
		r.fail("%s: delivered %d != accepted %d", name, p.Delivered, p.Accepted)
	}
}

// e2e measures POST /messages → in-process gateway → emulator → listener.
func (r *runner) e2e(ctx context.Context, conc, size, poolSize int) (Point, error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return Point{}, err
	}
	defer ep.close()
	gw, err := startGateway(ctx, ep.creds, poolSize, false)
	if err != nil {
		return Point{}, err
	}
	defer gw.close()
	client := newHTTPClient(conc)
	defer client.CloseIdleConnections()
	name := fmt.Sprintf("e2e c=%d size=%s pool=%d", conc, sizeName(size), poolSize)
	p := r.counted(ctx, name, &ep.sink, conc, postMessage(client, gw.url+"/messages", jsonBody(size)))
	p.Size, p.PoolSize = size, poolSize
	return p, nil
}

// ceiling measures the same load against the same router and middleware
// whose Relayer returns at once: the HTTP ceiling.
func (r *runner) ceiling(ctx context.Context, conc, size int) (Point, error) {
	gw, err := startGateway(ctx, relay.Credentials{}, 0, true)
	if err != nil {
		return Point{}, err
	}
	defer gw.close()
	client := newHTTPClient(conc)
	defer client.CloseIdleConnections()
	res := closedLoop(ctx, conc, r.opts.Warmup, r.opts.Window, postMessage(client, gw.url+"/messages", jsonBody(size)), nil)
	p := pointOf(res, conc)
	p.Size = size
	return p, nil
}

// pooled measures relay.Pool.Send straight to the emulator (no HTTP).
func (r *runner) pooled(ctx context.Context, conc, size int) (Point, error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return Point{}, err
	}
	defer ep.close()
	pool, err := relay.NewPool(relay.PoolConfig{Credentials: ep.creds, Size: defaultPoolSize, QueueSize: defaultQueueSize}, r.log.With("component", "pool"), nil)
	if err != nil {
		return Point{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = pool.Close(cctx)
	}()
	if err := waitPool(ctx, pool); err != nil {
		return Point{}, err
	}
	msg := relay.Message{ID: "bench", Type: relay.MessageBinary, Data: make([]byte, size)}
	p := r.counted(ctx, fmt.Sprintf("pool.Send c=%d size=%s", conc, sizeName(size)), &ep.sink, conc, func(ctx context.Context, _ int) error {
		return pool.Send(ctx, msg)
	})
	p.Size, p.PoolSize = size, defaultPoolSize
	return p, nil
}

// dialPerMessage measures the seed's way: a new connect WebSocket per
// message (relay.Dial, one write, close), through the same emulator.
func (r *runner) dialPerMessage(ctx context.Context, conc, size int) (Point, error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return Point{}, err
	}
	defer ep.close()
	data := make([]byte, size)
	p := r.counted(ctx, fmt.Sprintf("dial-per-message c=%d size=%s", conc, sizeName(size)), &ep.sink, conc, func(ctx context.Context, _ int) error {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ws, err := relay.Dial(dctx, ep.creds, relay.DialOptions{})
		if err != nil {
			return err
		}
		if err := ws.Write(dctx, websocket.MessageBinary, data); err != nil {
			ws.CloseNow()
			return err
		}
		return ws.Close(websocket.StatusNormalClosure, "")
	})
	p.Size = size
	return p, nil
}

// oneSocket measures one sender WebSocket writing as fast as it can, either
// through the emulator to the listener (relay.Dial) or straight to a plain
// WebSocket server (direct).
func (r *runner) oneSocket(ctx context.Context, size int, direct bool) (Point, error) {
	var (
		k    *sink
		ws   *websocket.Conn
		name string
	)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if direct {
		d, err := startDirect()
		if err != nil {
			return Point{}, err
		}
		defer d.close()
		k, name = &d.sink, "direct WebSocket"
		ws, _, err = websocket.Dial(dctx, d.url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return Point{}, err
		}
	} else {
		ep, err := r.stack.endpoint(ctx)
		if err != nil {
			return Point{}, err
		}
		defer ep.close()
		k, name = &ep.sink, "one WebSocket via emulator"
		ws, err = relay.Dial(dctx, ep.creds, relay.DialOptions{})
		if err != nil {
			return Point{}, err
		}
	}
	defer ws.CloseNow()
	data := make([]byte, size)
	// The write ctx is the run's: a per-write timeout ctx would cost an
	// allocation per message that neither side of the comparison needs.
	p := r.counted(ctx, fmt.Sprintf("%s size=%s", name, sizeName(size)), k, 1, func(ctx context.Context, _ int) error {
		return ws.Write(ctx, websocket.MessageBinary, data)
	})
	p.Size = size
	_ = ws.Close(websocket.StatusNormalClosure, "")
	return p, nil
}

// openLoopE2E measures the maximum rate of a fresh gateway with a closed
// loop at conc, then offers half that rate of size-byte messages in an
// open loop and measures latency from each request's scheduled start.
// Measuring the maximum right before, on the same gateway, keeps a noisy
// earlier point from setting the rate.
func (r *runner) openLoopE2E(ctx context.Context, conc, size int) (Point, error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return Point{}, err
	}
	defer ep.close()
	gw, err := startGateway(ctx, ep.creds, defaultPoolSize, false)
	if err != nil {
		return Point{}, err
	}
	defer gw.close()
	const workers = 256
	client := newHTTPClient(max(workers, conc))
	defer client.CloseIdleConnections()
	do := postMessage(client, gw.url+"/messages", jsonBody(size))
	base := ep.sink.msgs.Load()
	closed := r.counted(ctx, fmt.Sprintf("open loop: maximum at c=%d size=%s", conc, sizeName(size)), &ep.sink, conc, do)
	if closed.Rate <= 0 {
		return Point{}, fmt.Errorf("no maximum rate measured")
	}
	rate := closed.Rate * r.opts.OpenFraction
	// Warm up at the offered rate, unmeasured.
	warm := openLoop(ctx, rate, workers, r.opts.Warmup, do)
	res := openLoop(ctx, rate, workers, r.opts.OpenWindow, do)
	total := closed.Accepted + warm.OK + res.OK
	waitFor(ctx, r.opts.DrainTimeout, func() bool { return ep.sink.msgs.Load()-base >= total })
	p := pointOf(res, workers)
	p.Size, p.PoolSize = size, defaultPoolSize
	p.MaxRate, p.MaxConcurrency = closed.Rate, conc
	p.Accepted = total
	p.Delivered = ep.sink.msgs.Load() - base
	r.check(fmt.Sprintf("open loop %.0f/s size=%s", rate, sizeName(size)), p)

	// The same offered rate against the HTTP ceiling tells the relay's
	// share of the tail from the machine's (scheduling, other load).
	cgw, err := startGateway(ctx, relay.Credentials{}, 0, true)
	if err != nil {
		return Point{}, err
	}
	defer cgw.close()
	cdo := postMessage(client, cgw.url+"/messages", jsonBody(size))
	_ = openLoop(ctx, rate, workers, r.opts.Warmup, cdo)
	cp := pointOf(openLoop(ctx, rate, workers, r.opts.OpenWindow, cdo), workers)
	cp.Size = size
	p.Ceiling = &cp
	return p, nil
}

// sizeName is "100 B", "4 KiB", "64 KiB".
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ParseSizes reads a comma-separated list of sizes ("100,4KiB,64KiB").
func ParseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := parseSize(f)
		if err != nil {
			return nil, err
		}
		if n < 16 || n > 1<<20 {
			return nil, fmt.Errorf("size %s is outside 16 B to 1 MiB", sizeName(n))
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSize reads "100", "100B", "4KiB", "4k", "64KiB".
func parseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"kb", 1 << 10}, {"k", 1 << 10}, {"mib", 1 << 20}, {"mb", 1 << 20}, {"m", 1 << 20}, {"b", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, suf.s)), suf.m
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != t {
		return 0, fmt.Errorf("bad size %q (want e.g. 100, 4KiB)", s)
	}
	return n * mult, nil
}
