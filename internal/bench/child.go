package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// The separate-process section (process.go) runs relaybench itself as two
// kinds of child process: a bare net/http server (the floor of CPU per
// request) and the load generator, so that neither shares a runtime with
// the process being measured. cmd/relaybench calls ServeBare and RunLoad
// for its hidden -serve-bare and -load-child flags.

// ServeBare serves a bare net/http server on addr until ctx is done: every
// request's body is read and answered 202 with a small JSON body, as the
// gateway answers POST /messages. It prints "listening ADDR" on out once
// it accepts connections.
func ServeBare(ctx context.Context, addr string, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	answer := []byte(`{"id":"00000000000000000000000000000000","status":"sent"}`)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write(answer)
		}),
		ReadHeaderTimeout: 5 * time.Second, // a benchmark fixture: loopback clients only
		IdleTimeout:       60 * time.Second,
	}
	fmt.Fprintf(out, "listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// LoadSpec is what a load-generator child runs: a closed loop of Conc
// keep-alive HTTP/1.1 clients POSTing Body to URL (or, with Rate > 0, an
// open loop offering Rate requests per second with up to Conc workers),
// Warmup then Window.
type LoadSpec struct {
	URL    string        `json:"url"`
	Body   string        `json:"body"`
	Conc   int           `json:"conc"`
	Rate   float64       `json:"rate,omitempty"`
	Warmup time.Duration `json:"warmup"`
	Window time.Duration `json:"window"`
	// Want is the expected status (202 for POST /messages); a batch
	// answer (200) counts its "sent" items as messages.
	Want  int  `json:"want"`
	Batch bool `json:"batch,omitempty"`
}

// LoadResult is a load-generator child's answer, one JSON line.
type LoadResult struct {
	Requests int64            `json:"requests"` // successful requests in the window
	Messages int64            `json:"messages"` // messages accepted, warmup included (batch: "sent" items)
	Window   time.Duration    `json:"window"`
	P50      time.Duration    `json:"p50,omitempty"`
	P99      time.Duration    `json:"p99,omitempty"`
	Max      time.Duration    `json:"max,omitempty"`
	SvcP99   time.Duration    `json:"svc_p99,omitempty"` // open loop: p99 from the request's write
	Late     int64            `json:"late,omitempty"`    // open loop: arrivals written over 1 ms late
	Errors   map[string]int64 `json:"errors,omitempty"`
}

// Load-child protocol lines on stdout, before the result.
const (
	lineMeasure = "measure" // the measurement window opened
	lineStop    = "stop"    // it closed
)

// RunLoad runs spec and writes the protocol lines and the result on out:
// "measure" when the window opens, "stop" when it closes (so the parent
// reads the measured process's CPU at the same instants), then the
// LoadResult as JSON.
func RunLoad(ctx context.Context, spec LoadSpec, out io.Writer) error {
	if spec.Conc < 1 || spec.URL == "" || spec.Window <= 0 {
		return fmt.Errorf("bench: load spec needs url, conc and window: %+v", spec)
	}
	var msgs atomic.Int64
	poster, err := newRawPoster(spec, spec.Conc, &msgs)
	if err != nil {
		return err
	}
	defer poster.closeAll()
	do := poster.do
	var res loadResult
	if spec.Rate > 0 {
		if res, err = runOpenLoop(ctx, spec, poster, func() { fmt.Fprintln(out, lineMeasure) }); err != nil {
			return err
		}
		fmt.Fprintln(out, lineStop)
	} else {
		res = closedLoop(ctx, spec.Conc, spec.Warmup, spec.Window, do, func(ph int32) {
			switch ph {
			case phaseMeasure:
				fmt.Fprintln(out, lineMeasure)
			case phaseStop:
				fmt.Fprintln(out, lineStop)
			}
		})
	}
	sum := res.Latencies.summarize()
	return json.NewEncoder(out).Encode(LoadResult{
		Requests: res.Measured, Messages: msgs.Load(), Window: res.Window,
		P50: sum.P50, P99: sum.P99, Max: sum.Max, Errors: res.Errors,
		SvcP99: res.Service.summarize().P99, Late: res.Late,
	})
}

// batchBody is a POST /messages:batch body of n items of about size bytes
// each ({"message":"aaa…"}).
func batchBody(n, size int) []byte {
	item := jsonBody(size)
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(item)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// readLoadOutput reads a load child's stdout: it calls mark at the
// protocol lines and returns the result line decoded.
func readLoadOutput(r io.Reader, mark func(line string)) (LoadResult, error) {
	var res LoadResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == lineMeasure, line == lineStop:
			mark(line)
		case strings.HasPrefix(line, "{"):
			err := json.Unmarshal([]byte(line), &res)
			return res, err
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	return res, errors.New("load child printed no result")
}
