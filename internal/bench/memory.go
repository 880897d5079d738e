package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is what the memory scenario measured on a gateway process.
type Memory struct {
	Binary      string // the gateway binary measured
	IdleKiB     int64  // VmRSS idle, default pool, every connection ready
	PoolSize    int    // the default pool size of IdleKiB
	Clients     int    // concurrent HTTP clients of the load phase
	LoadPeakKiB int64  // highest VmRSS sampled during the load
	LoadHWMKiB  int64  // VmHWM (peak resident size) at the end of the load
	Load        Point  // the load phase itself (100 B messages)
	// Process is end to end at concurrency 64, 100 B, against the
	// gateway process: the in-process figures of section 1 cross-checked
	// with the gateway in its own runtime.
	Process Point
	// ProcessOpen is the open loop at OpenFraction of Process's rate,
	// against the process.
	ProcessOpen Point
	// Go runtime figures from the gateway's /metrics (its Prometheus Go
	// collector): idle, and at the highest RSS sample of the load.
	IdleRuntime, LoadRuntime map[string]float64
	// Per idle pooled connection: idle RSS at two pool sizes.
	SmallPool, LargePool       int
	SmallPoolKiB, LargePoolKiB int64      // the median pair
	Pairs                      [][2]int64 // every (small, large) measurement, in KiB
	SmallRuntime, LargeRuntime map[string]float64
}

// perConnRuntime is the difference of a runtime series between the two
// pool sizes, per connection; ok is false if either scrape lacks it.
func (m *Memory) perConnRuntime(name string) (float64, bool) {
	a, aok := m.SmallRuntime[name]
	b, bok := m.LargeRuntime[name]
	if !aok || !bok || m.LargePool == m.SmallPool {
		return 0, false
	}
	return (b - a) / float64(m.LargePool-m.SmallPool), true
}

// PerConnKiB is the idle RSS per pooled connection: the difference between
// the two pool sizes divided by the difference in connections.
func (m *Memory) PerConnKiB() float64 {
	if m.LargePool == m.SmallPool {
		return 0
	}
	return float64(m.LargePoolKiB-m.SmallPoolKiB) / float64(m.LargePool-m.SmallPool)
}

// buildGateway builds cmd/gateway into dir with the go command, from the
// module that contains the working directory.
func buildGateway(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "gateway")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/gateway")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gateway: %v: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

// moduleRoot is the nearest directory above the working directory holding
// relaygate's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/relaygate/relaygate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the relaygate module (run from the repository, or pass -gateway-bin)")
		}
		dir = parent
	}
}

// childGateway is a gateway process started from bin, relaying to one of
// the stack's endpoints.
type childGateway struct {
	cmd      *exec.Cmd
	url      string
	adminURL string // GATEWAY_ADMIN_ADDR, where /metrics is
	// log is the file the gateway's stdout and stderr go to: writing its
	// log costs the gateway a write into the page cache, as it would
	// into a file or a log collector's pipe, and no process of the
	// benchmark reads it as it runs (a pipe read by this process would
	// charge the log's cost to the emulator and listener here).
	log    *os.File
	exited chan struct{}
}

// startChild starts bin as a gateway on a free loopback port with poolSize
// pooled connections to ep, and waits until /readyz answers 200 and the
// listener has accepted every pooled connection. Only the variables it
// needs reach the child, plus env (Options.GatewayEnv), so a stray
// GATEWAY_* in the benchmark's environment cannot change what is measured.
func startChild(ctx context.Context, bin string, ep *endpoint, poolSize int, env []string) (*childGateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp("", "relaybench-gateway-*.log")
	if err != nil {
		return nil, err
	}
	c := &childGateway{url: "http://" + port, adminURL: "http://" + adminPort, log: logf, exited: make(chan struct{})}
	c.cmd = exec.Command(bin)
	c.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"GATEWAY_NAMESPACE=" + ep.creds.Host,
		"GATEWAY_ENTITY_PATH=" + ep.creds.EntityPath,
		"GATEWAY_KEY_NAME=" + ep.creds.KeyName,
		"GATEWAY_KEY=" + ep.creds.Key,
		"GATEWAY_EMULATOR=true",
		"GATEWAY_ADDR=" + port,
		"GATEWAY_ADMIN_ADDR=" + adminPort,
		"GATEWAY_POOL_SIZE=" + strconv.Itoa(poolSize),
	}
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stdout = logf
	c.cmd.Stderr = logf
	if err := c.cmd.Start(); err != nil {
		c.removeLog()
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	client := &http.Client{Timeout: time.Second}
	ready := waitFor(ctx, 20*time.Second, func() bool {
		select {
		case <-c.exited:
			return true
		default:
		}
		resp, err := client.Get(c.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && ep.sink.open.Load() >= int64(poolSize)
	})
	select {
	case <-c.exited:
		defer c.removeLog()
		return nil, fmt.Errorf("gateway exited: %s", c.logTail())
	default:
	}
	if !ready {
		tail := c.logTail()
		c.stop()
		return nil, fmt.Errorf("gateway not ready after 20s (%d of %d pooled connections accepted): %s", ep.sink.open.Load(), poolSize, tail)
	}
	return c, nil
}

// stop sends SIGINT (a graceful shutdown) and kills the process if it has
// not exited after 10 s.
func (c *childGateway) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.removeLog()
}

// logTail returns the last 8 KiB of the gateway's log (which may have
// grown to hundreds of megabytes at info level).
func (c *childGateway) logTail() string {
	fi, err := c.log.Stat()
	if err != nil {
		return ""
	}
	b := make([]byte, min(fi.Size(), 8<<10))
	n, _ := c.log.ReadAt(b, fi.Size()-int64(len(b)))
	return strings.TrimSpace(string(b[:n]))
}

func (c *childGateway) removeLog() {
	c.log.Close()
	os.Remove(c.log.Name())
}

// status reads a "VmRSS:   1234 kB" style field of /proc/PID/status.
func (c *childGateway) status(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatusField(b, field)
}

// parseStatusField returns field's value in KiB from /proc/PID/status text.
func parseStatusField(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected value %q", field, rest)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%s: not found", field)
}

// idleRSS waits settle, then returns the median of samples VmRSS readings
// taken every 50 ms.
func (c *childGateway) idleRSS(ctx context.Context, settle time.Duration, samples int) (int64, error) {
	wait(ctx, settle)
	var vals []int64
	for range samples {
		v, err := c.status("VmRSS")
		if err != nil {
			return 0, err
		}
		vals = append(vals, v)
		wait(ctx, 50*time.Millisecond)
	}
	slices.Sort(vals)
	return vals[len(vals)/2], nil
}

// runtimeMetrics are the gateway's Go collector series the report shows.
var runtimeMetrics = []string{
	"go_goroutines",
	"go_memstats_heap_inuse_bytes",
	"go_memstats_heap_idle_bytes",
	"go_memstats_heap_released_bytes",
	"go_memstats_stack_inuse_bytes",
	"go_memstats_sys_bytes",
	"go_memstats_next_gc_bytes",
	"go_gc_gogc_percent",
	"go_gc_gomemlimit_bytes",
}

// scrapeRuntime reads runtimeMetrics from the gateway's /metrics; nil if
// it cannot.
func (c *childGateway) scrapeRuntime() map[string]float64 {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(c.adminURL + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(runtimeMetrics, name) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// freePort returns a free 127.0.0.1:PORT (closed again; the child binds it).
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// memory measures gateway processes: idle RSS with the default pool,
// RSS under clients concurrent HTTP clients, and idle RSS at two pool
// sizes for the cost of one idle pooled connection.
func (r *runner) memory(ctx context.Context, bin string) (*Memory, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("needs /proc (Linux)")
	}
	m := &Memory{Binary: bin, PoolSize: defaultPoolSize, Clients: r.opts.MemClients, SmallPool: 1, LargePool: r.opts.LargePool}
	if err := r.memoryUnderLoad(ctx, bin, m); err != nil {
		return nil, err
	}
	if err := r.memoryPerConn(ctx, bin, m); err != nil {
		return nil, err
	}
	return m, nil
}

// memoryUnderLoad measures one gateway process with the default pool:
// idle RSS, end to end at c=64 and the open loop against it, then RSS
// under m.Clients concurrent clients.
func (r *runner) memoryUnderLoad(ctx context.Context, bin string, m *Memory) error {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return err
	}
	defer ep.close()
	gw, err := startChild(ctx, bin, ep, defaultPoolSize, r.opts.GatewayEnv)
	if err != nil {
		return err
	}
	defer gw.stop()
	if m.IdleKiB, err = gw.idleRSS(ctx, r.opts.Settle, 10); err != nil {
		return err
	}
	m.IdleRuntime = gw.scrapeRuntime()
	c64 := newHTTPClient(64)
	m.Process = r.counted(ctx, "gateway process, c=64", &ep.sink, 64, postMessage(c64, gw.url+"/messages", jsonBody(100)))
	m.Process.Size, m.Process.PoolSize = 100, defaultPoolSize
	c64.CloseIdleConnections()
	if m.Process.Rate > 0 {
		m.ProcessOpen = r.processOpenLoop(ctx, gw, ep, m.Process.Rate)
	}
	client := newHTTPClient(m.Clients)
	defer client.CloseIdleConnections()
	stop := sampleRSS(gw, m)
	m.Load = r.counted(ctx, fmt.Sprintf("gateway process, %d clients", m.Clients), &ep.sink, m.Clients,
		postMessage(client, gw.url+"/messages", jsonBody(100)))
	m.Load.Size, m.Load.PoolSize = 100, defaultPoolSize
	stop()
	m.LoadHWMKiB, err = gw.status("VmHWM")
	return err
}

// processOpenLoop is the open loop of the p99 target against the gateway
// process, at OpenFraction of its closed-loop maxRate.
func (r *runner) processOpenLoop(ctx context.Context, gw *childGateway, ep *endpoint, maxRate float64) Point {
	const workers = 256
	co := newHTTPClient(workers)
	defer co.CloseIdleConnections()
	do := postMessage(co, gw.url+"/messages", jsonBody(100))
	rate := maxRate * r.opts.OpenFraction
	base := ep.sink.msgs.Load()
	warm := openLoop(ctx, rate, workers, r.opts.Warmup, do)
	res := openLoop(ctx, rate, workers, r.opts.OpenWindow, do)
	waitFor(ctx, r.opts.DrainTimeout, func() bool { return ep.sink.msgs.Load()-base >= warm.OK+res.OK })
	p := pointOf(res, workers)
	p.Size, p.PoolSize = 100, defaultPoolSize
	p.MaxRate, p.MaxConcurrency = maxRate, 64
	p.Accepted, p.Delivered = warm.OK+res.OK, ep.sink.msgs.Load()-base
	r.check("gateway process, open loop", p)
	return p
}

// sampleRSS reads gw's VmRSS every 20 ms into m.LoadPeakKiB, scraping the
// runtime figures into m.LoadRuntime at a new peak (at most every 250 ms:
// a scrape costs the gateway a little), until the returned stop.
func sampleRSS(gw *childGateway, m *Memory) (stop func()) {
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var scraped time.Time
		for {
			if v, err := gw.status("VmRSS"); err == nil {
				if v > m.LoadPeakKiB && time.Since(scraped) > 250*time.Millisecond {
					if rt := gw.scrapeRuntime(); rt != nil {
						m.LoadRuntime, scraped = rt, time.Now()
					}
				}
				m.LoadPeakKiB = max(m.LoadPeakKiB, v)
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-sampled }
}

// memoryPerConn measures idle RSS at two pool sizes, alternating Repeat
// times; the per-connection figure is the median of the pairs'
// differences, since one process's RSS moves by a few hundred KiB with
// the GC's timing.
func (r *runner) memoryPerConn(ctx context.Context, bin string, m *Memory) error {
	for range max(1, r.opts.Repeat) {
		var pair [2]int64
		for i, size := range []int{m.SmallPool, m.LargePool} {
			kib, rt, err := r.idleChild(ctx, bin, size)
			if err != nil {
				return err
			}
			pair[i] = kib
			if i == 0 {
				m.SmallRuntime = rt
			} else {
				m.LargeRuntime = rt
			}
		}
		m.Pairs = append(m.Pairs, pair)
	}
	med := slices.Clone(m.Pairs)
	slices.SortFunc(med, func(a, b [2]int64) int { return cmp.Compare(a[1]-a[0], b[1]-b[0]) })
	m.SmallPoolKiB, m.LargePoolKiB = med[(len(med)-1)/2][0], med[(len(med)-1)/2][1]
	return nil
}

// idleChild starts a gateway process with poolSize connections on a
// fresh endpoint and returns its idle RSS and runtime figures.
func (r *runner) idleChild(ctx context.Context, bin string, poolSize int) (int64, map[string]float64, error) {
	ep, err := r.stack.endpoint(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer ep.close()
	gw, err := startChild(ctx, bin, ep, poolSize, r.opts.GatewayEnv)
	if err != nil {
		return 0, nil, err
	}
	defer gw.stop()
	kib, err := gw.idleRSS(ctx, r.opts.Settle, 10)
	return kib, gw.scrapeRuntime(), err
}
