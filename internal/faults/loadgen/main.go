// Command loadgen is the fault-injection suite's load generator
// (internal/faults builds and runs it; it is not installed). Each of
// -clients goroutines posts text/plain messages "ID padding" of -size bytes
// to -url over its own keep-alive connection, pausing -pace between its
// requests, until standard input is closed; it then lets the requests in
// flight finish and exits. It prints one tab-separated line per request:
//
//	id status code retry reused start_unix_ns latency_ns error
//
// (status 0: no HTTP response; code: the problem's code; retry and reused:
// 1 or 0 for a Retry-After header and a kept-alive connection). It runs as a
// process of its own, like the relay, the listener and the gateway, so that
// the load's hundreds of clients do not share a runtime (or the race
// detector) with the test that judges the outcome.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "POST target")
	clients := flag.Int("clients", 1, "concurrent clients, one connection each")
	size := flag.Int("size", 1024, "message size in bytes")
	pace := flag.Duration("pace", 0, "pause between a client's requests")
	flag.Parse()
	if *url == "" || *clients < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -url and -clients ≥ 1 are required")
		os.Exit(2)
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()

	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	var mu sync.Mutex
	emit := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		out.WriteString(line)
		if out.Buffered() > 32<<10 {
			out.Flush()
		}
	}
	// Flush at least every 10 ms, so the test sees results while the
	// load runs (its recovery checks read them live).
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				mu.Lock()
				out.Flush()
				mu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	for c := range *clients {
		wg.Go(func() { client(ctx, c, *url, *size, *pace, emit) })
	}
	wg.Wait()
	<-flushed
	mu.Lock()
	out.Flush()
	mu.Unlock()
}

// client posts until ctx ends or the server refuses connections.
func client(ctx context.Context, c int, url string, size int, pace time.Duration, emit func(string)) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	pad := strings.Repeat("x", max(size-16, 0))
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("c%d-%d", c, i)
		start := time.Now()
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, url, strings.NewReader(id+" "+pad))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := hc.Do(req)
		status, code, retry, errText := 0, "", false, ""
		if err != nil {
			errText = err.Error()
		} else {
			var p struct{ Code string }
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(b, &p)
			status, code, retry = resp.StatusCode, p.Code, resp.Header.Get("Retry-After") != ""
		}
		emit(fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", id, status, code, bit(retry), bit(reused),
			start.UnixNano(), time.Since(start).Nanoseconds(), strconv.Quote(errText)))
		if err != nil && strings.Contains(errText, "connection refused") {
			return // the gateway is gone
		}
		if pace > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pace):
			}
		}
	}
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
