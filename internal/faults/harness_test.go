package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/testlog"
)

// binDir holds the binaries TestMain builds.
var binDir string

// enabled reports whether the suite runs: FAULTS=1 (shortened scenarios,
// about 90 s on 2 cores) or FAULTS_FULL=1. Without either, go test ./...
// stays fast and each scenario skips, saying how to run it; .ci/run sets
// FAULTS=1 for this package.
func enabled() bool { return os.Getenv("FAULTS") == "1" || os.Getenv("FAULTS_FULL") == "1" }

func TestMain(m *testing.M) {
	if !enabled() {
		os.Exit(m.Run()) // every scenario skips in startEmu
	}
	dir, err := os.MkdirTemp("", "relaygate-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/relaygate/relaygate/cmd/gateway", "github.com/relaygate/relaygate/cmd/listener",
		"github.com/relaygate/relaygate/cmd/relay-emulator", "github.com/relaygate/relaygate/internal/faults/loadgen")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	writeReport()
	os.RemoveAll(dir)
	os.Exit(code)
}

const entity = "faults"

// relayEmu is a cmd/relay-emulator process that can be killed and started
// again on the same port with the same key. It runs as its own process, as
// the relay does in production: in this process it would share the
// runtime with the load's hundreds of clients, and its scheduling delays
// would be measured as the gateway's latency.
type relayEmu struct {
	t    *testing.T
	rule emulator.Rule
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

func startEmu(t *testing.T) *relayEmu {
	if !enabled() {
		t.Skip("fault-injection suite: run with FAULTS=1 (shortened, ~90 s) or FAULTS_FULL=1 (full, a few minutes)")
	}
	e := &relayEmu{t: t, rule: emulator.DevRule(), addr: freeAddr(t), logs: &syncBuffer{}}
	e.start()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("relay-emulator log:\n%s", e.logs.String())
		}
	})
	return e
}

// start runs the emulator on e.addr and waits until it listens.
func (e *relayEmu) start() {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "relay-emulator"))
	cmd.Env = append(os.Environ(), "RELAY_EMULATOR_ADDR="+e.addr,
		fmt.Sprintf("RELAY_EMULATOR_RULES=%s=%s:Listen,Send,Manage", e.rule.Name, e.rule.Key),
		"RELAY_EMULATOR_LOG_LEVEL=info", "RELAY_EMULATOR_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	up, done := make(chan struct{}), make(chan struct{})
	go func() {
		watchLog(stderr, e.logs, "relay emulator listening", up)
		_ = cmd.Wait()
		close(done)
	}()
	e.cmd, e.done = cmd, done
	select {
	case <-up:
	case <-done:
		e.t.Fatalf("relay-emulator exited at start:\n%s", e.logs.String())
	case <-time.After(20 * time.Second):
		e.t.Fatalf("relay-emulator did not listen on %s", e.addr)
	}
}

// stop SIGKILLs the emulator and waits for it to exit.
func (e *relayEmu) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.done
	e.cmd = nil
}

// watchLog reads a process's log lines from r until it ends (the process
// blocks if nobody reads): each goes into logs, if not nil, and up, if not
// nil, is closed at the first line containing marker.
func watchLog(r io.Reader, logs *syncBuffer, marker string, up chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if up != nil && bytes.Contains(sc.Bytes(), []byte(marker)) {
			close(up)
			up = nil
		}
		if logs != nil {
			logs.writeLine(sc.Bytes())
		}
	}
	_, _ = io.Copy(io.Discard, r) // after a line too long for the scanner
}

// syncBuffer collects a process's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) writeLine(line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(line)
	b.buf.WriteByte('\n')
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// connString is a connection string for the emulator at addr.
func (e *relayEmu) connString(addr string) string {
	return fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s;UseDevelopmentEmulator=true",
		addr, e.rule.Name, e.rule.Key, entity)
}

// received records what the listener processes printed.
type received struct {
	mu     sync.Mutex
	count  map[string]int // id → times printed
	byProc map[string]int // listener name → messages
	first  map[string]time.Time
	change chan struct{} // closed and replaced on every message
}

func newReceived() *received {
	return &received{count: map[string]int{}, byProc: map[string]int{}, first: map[string]time.Time{}, change: make(chan struct{})}
}

func (r *received) add(proc, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count[id]++
	if r.byProc[proc] == 0 {
		r.first[proc] = time.Now()
	}
	r.byProc[proc]++
	close(r.change)
	r.change = make(chan struct{})
}

func (r *received) proc(name string) (n int, first time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byProc[name], r.first[name]
}

// settle waits until every id in want was received, or until nothing new
// arrived for quiet.
func (r *received) settle(want []string, quiet time.Duration) {
	for {
		r.mu.Lock()
		missing := 0
		for _, id := range want {
			if r.count[id] == 0 {
				missing++
			}
		}
		ch := r.change
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-ch:
		case <-time.After(quiet):
			return
		}
	}
}

// listenerProc is one cmd/listener process.
type listenerProc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}
	up   chan struct{} // closed when the listener logged that it is connected
}

func startListener(t *testing.T, name, connString string, rec *received) *listenerProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "listener"))
	cmd.Env = append(os.Environ(), "LISTENER_CONNECTION_STRING="+connString, "LISTENER_LOG_FORMAT=json", "LISTENER_LOG_LEVEL=info")
	// The listener prints into a file, not a pipe: a pipe would make this
	// process, which also runs the load's clients, the slowest reader of
	// the chain, and its backpressure would stall the gateway's writes (a
	// harness artefact, not the gateway's behaviour).
	out := filepath.Join(t.TempDir(), name+".out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout = f
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &listenerProc{t: t, name: name, cmd: cmd, done: make(chan struct{}), up: make(chan struct{})}
	exited := make(chan struct{})
	var followed sync.WaitGroup
	followed.Go(func() {
		follow(out, exited, func(line []byte) {
			if id, ok := printedID(line); ok {
				rec.add(name, id)
			}
		})
	})
	go func() {
		watchLog(stderr, nil, "control channel open", l.up)
		_ = cmd.Wait()
		close(exited)
		followed.Wait()
		close(l.done)
	}()
	t.Cleanup(func() { l.signal(syscall.SIGKILL); <-l.done })
	return l
}

// follow calls line for every line appended to the file at path, as tail -f
// does, until exited is closed and the file is read to its end.
func follow(path string, exited <-chan struct{}, line func([]byte)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	tick := time.NewTicker(5 * time.Millisecond) // polling the file, as tail -f does
	defer tick.Stop()
	var part []byte
	last := false // the writer had exited before this pass began
	for {
		b, err := r.ReadSlice('\n')
		part = append(part, b...)
		switch {
		case err == nil:
			line(part)
			part = part[:0]
			continue
		case err == bufio.ErrBufferFull:
			continue
		case last:
			return
		}
		select {
		case <-exited:
			last = true
		case <-tick.C:
		}
	}
}

func (l *listenerProc) signal(s syscall.Signal) { _ = l.cmd.Process.Signal(s) }

// kill SIGKILLs the listener and waits for it to exit.
func (l *listenerProc) kill() { l.signal(syscall.SIGKILL); <-l.done }

// waitUp waits until the listener logged that its control channel is open.
func (l *listenerProc) waitUp() {
	l.t.Helper()
	select {
	case <-l.up:
	case <-l.done:
		l.t.Fatalf("listener %s exited", l.name)
	case <-time.After(20 * time.Second):
		l.t.Fatalf("listener %s did not connect", l.name)
	}
}

// gatewayProc is one cmd/gateway process.
type gatewayProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	done chan struct{}
	err  error // the exit status, once done is closed
	logs *syncBuffer
}

func startGateway(t *testing.T, connString string, env ...string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "gateway"))
	addr := freeAddr(t)
	cmd.Env = append(os.Environ(), "GATEWAY_CONNECTION_STRING="+connString, "GATEWAY_ADDR="+addr,
		"GATEWAY_LOG_FORMAT=json", "GATEWAY_LOG_LEVEL=warn", "GATEWAY_SEND_TIMEOUT=5s", "GATEWAY_DIAL_TIMEOUT=3s",
		"GATEWAY_ADMIN_ADDR=127.0.0.1:0") // not the default 9090, which a gateway running here may hold
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{t: t, cmd: cmd, done: make(chan struct{}), logs: &syncBuffer{}, base: "http://" + addr}
	go func() {
		watchLog(stderr, g.logs, "", nil)
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-g.done
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.logText())
		}
	})
	return g
}

func (g *gatewayProc) logText() string { return g.logs.String() }

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ready returns /readyz's status and detail.
func (g *gatewayProc) ready() (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	r, err := c.Get(g.base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	var p struct{ Detail string }
	_ = json.NewDecoder(r.Body).Decode(&p)
	return r.StatusCode, p.Detail
}

// waitReady waits until /readyz answers 200 and returns how long it took.
func (g *gatewayProc) waitReady(within time.Duration) time.Duration {
	g.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if s, _ := g.ready(); s == 200 {
			return time.Since(start)
		}
		select {
		case <-g.done:
			g.t.Fatalf("gateway exited: %v", g.err)
		case <-time.After(20 * time.Millisecond): // probing, as an orchestrator does
		}
	}
	s, d := g.ready()
	g.t.Fatalf("gateway not ready after %v: %d %s", within, s, d)
	return 0
}

// result is the outcome of one request of the load.
type result struct {
	id      string
	status  int  // 0: no HTTP response
	reused  bool // sent on a kept-alive connection (one the server had accepted)
	err     string
	code    string
	retry   bool // Retry-After present
	start   time.Time
	latency time.Duration
}

// load is a loadgen process (internal/faults/loadgen): concurrent clients,
// each over its own keep-alive connection, post text/plain messages
// "ID padding" until stopped; every result comes back as a line.
type load struct {
	cmd   *exec.Cmd
	stdin io.Closer
	read  chan struct{} // closed when every result line was read

	mu      sync.Mutex
	results []result
}

func startLoad(t *testing.T, base string, clients, size int, pace time.Duration) *load {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "loadgen"), "-url", base+"/messages",
		"-clients", strconv.Itoa(clients), "-size", strconv.Itoa(size), "-pace", pace.String())
	cmd.Stderr = testlog.Output(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &load{cmd: cmd, stdin: stdin, read: make(chan struct{})}
	go func() {
		defer close(l.read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r, err := parseResult(sc.Text())
			if err != nil {
				t.Errorf("loadgen: %v", err)
				continue
			}
			l.mu.Lock()
			l.results = append(l.results, r)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-l.read; _ = cmd.Wait() })
	return l
}

// parseResult parses a line of loadgen's output.
func parseResult(line string) (result, error) {
	f := strings.Split(line, "\t")
	if len(f) != 8 {
		return result{}, fmt.Errorf("%d fields in %q", len(f), line)
	}
	status, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseInt(f[5], 10, 64)
	lat, err3 := strconv.ParseInt(f[6], 10, 64)
	msg, err4 := strconv.Unquote(f[7])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return result{}, fmt.Errorf("%q: %w", line, err)
	}
	return result{id: f[0], status: status, code: f[2], retry: f[3] == "1", reused: f[4] == "1",
		start: time.Unix(0, start), latency: time.Duration(lat), err: msg}, nil
}

// finish stops the load, waits for the requests in flight and returns
// every result.
func (l *load) finish() []result {
	l.stdin.Close()
	<-l.read
	_ = l.cmd.Wait()
	return l.snapshot()
}

// snapshot returns the results so far.
func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// outcome compares the load's results with what the listeners printed.
type outcome struct {
	requests, accepted, noResponse   int
	overloaded, unavailable, unknown int
	lost, duplicates                 int
	p99                              time.Duration
}

func evaluate(rs []result, rec *received) (o outcome, accepted []string) {
	for _, r := range rs {
		o.requests++
		switch {
		case r.status == 202:
			o.accepted++
			accepted = append(accepted, r.id)
		case r.status == 0:
			o.noResponse++
		case r.code == "overloaded":
			o.overloaded++
		case r.status == 502:
			o.unknown++ // partial write: may have been delivered
		default:
			o.unavailable++
		}
	}
	return o, accepted
}

// tally counts lost and duplicated ids once the listeners have settled.
func (o *outcome) tally(rs []result, accepted []string, rec *received, quiet time.Duration) {
	rec.settle(accepted, quiet)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range accepted {
		if rec.count[id] == 0 {
			o.lost++
		}
	}
	for _, r := range rs {
		n := rec.count[r.id]
		if n > 1 {
			o.duplicates += n - 1
		}
		if n > 0 && r.status != 202 && r.status != 502 && r.status != 0 {
			o.duplicates++ // delivered after a 503/504: counted with duplicates as a broken promise
		}
	}
	var lat []time.Duration
	for _, r := range rs {
		if r.status == 202 {
			lat = append(lat, r.latency)
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		o.p99 = lat[len(lat)*99/100]
	}
}

// proxy is a TCP proxy whose connections can all be reset at once.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.resetAll() })
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); u.Close() }()
		go func() { _, _ = io.Copy(c, u); c.Close() }()
	}
}

// resetAll closes every proxied connection with a TCP reset.
func (p *proxy) resetAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
	return n
}

// printedID returns the id at the start of the "text" of a line that
// cmd/listener printed ({"time":…,"type":"text","text":"ID padding…"}).
// It looks the member up instead of decoding the line: with 64 KiB
// messages, decoding every line made this process, which also runs the
// load and the relay, the slowest reader of the chain, and the relay's
// backpressure then stalled the gateway's writes (a harness artefact).
func printedID(line []byte) (string, bool) {
	_, text, ok := bytes.Cut(line, []byte(`"text":"`))
	if !ok {
		return "", false
	}
	end := bytes.IndexAny(text, ` "`)
	if end <= 0 {
		return "", false
	}
	return string(text[:end]), true
}
