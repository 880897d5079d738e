package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// Sizes of TestReplicasBehindALoadBalancer: enough traffic that the
// SIGTERM lands mid-load, small enough for CI on two cores.
const (
	replicaCount   = 3
	replicaMsgs    = 450
	replicaWorkers = 6
	replicaEntity  = "replicas"
)

// TestReplicasBehindALoadBalancer runs three gateway processes behind a
// round-robin TCP proxy (which, like a Kubernetes Service, routes only to
// replicas whose /readyz answers 200 and tries the next replica when a
// connect is refused), with one emulator and two listeners. Every message
// a replica accepts (202) must reach a listener exactly once, and a
// replica SIGTERMed mid-load must answer every request it received and
// exit 0. Clients retry a 503 (draining, overloaded) with the same id, as
// the API tells them to, so in the end every message is accepted.
func TestReplicasBehindALoadBalancer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs three replicas")
	}
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGTERM")
	}
	emu := emulatortest.Start(t)
	rec := startReceivers(t, emu.ListenerCredentials(replicaEntity), 2)

	bin := filepath.Join(buildBinaries(t, "gateway"), "gateway")
	env := replicaEnv(t, bin, emu.Credentials(replicaEntity))
	var replicas []*process
	var addrs []string
	for i := range replicaCount {
		port := freePort(t)
		e := map[string]string{"GATEWAY_ADDR": "127.0.0.1:" + port}
		for k, v := range env {
			e[k] = v
		}
		replicas = append(replicas, startService(t, fmt.Sprintf("gateway-%d", i), bin, nil, e))
		addrs = append(addrs, "127.0.0.1:"+port)
	}
	dump := func() string {
		var b strings.Builder
		for _, p := range replicas {
			fmt.Fprintf(&b, "--- %s stderr:\n%s", p.name, p.stderr.String())
		}
		return b.String()
	}
	lb := startRoundRobin(t, addrs)
	lb.waitAllReady(t, 20*time.Second, dump)

	// The load: workers POST every id through the proxy, one TCP
	// connection per request so that each is balanced.
	load := newReplicaLoad("http://"+lb.addr(), replicaMsgs)
	victim := replicas[1]
	var sigterm sync.Once
	load.onAccepted = func(n int64) {
		if n == replicaMsgs/3 {
			sigterm.Do(func() {
				if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Errorf("SIGTERM: %v", err)
				}
			})
		}
	}
	load.run(replicaWorkers)

	select {
	case err := <-victim.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", victim.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not exit within 20 s of SIGTERM", victim.name)
	}

	if errs := load.errors(); len(errs) > 0 {
		t.Errorf("%d requests got no HTTP answer (a replica dropped a request it had received), first: %v\n%s",
			len(errs), errs[0], dump())
	}
	if n := lb.conns(1); n == 0 {
		t.Errorf("the SIGTERMed replica served no connection")
	}
	accepted := load.acceptedIDs()
	rec.waitFor(t, accepted, 15*time.Second)
	got := rec.counts()
	for _, id := range accepted {
		if got[id] != 1 {
			t.Errorf("message %s accepted (202), delivered %d times", id, got[id])
		}
	}
	if len(accepted) != replicaMsgs {
		t.Errorf("%d of %d messages accepted (503s are retried)", len(accepted), replicaMsgs)
	}
	if len(got) != len(accepted) {
		t.Errorf("listeners received %d distinct ids, %d were accepted", len(got), len(accepted))
	}
	t.Logf("accepted %d; connections per replica %d/%d/%d; 503 retries %d",
		len(accepted), lb.conns(0), lb.conns(1), lb.conns(2), load.retries.Load())
}

// replicaEnv is the environment of every replica: the emulator's
// connection string, a small pool, and a drain delay when the binary
// knows GATEWAY_DRAIN_DELAY (readyz goes 503 at once, serving goes on for
// the delay, so the proxy stops routing before the listener closes).
func replicaEnv(t *testing.T, bin string, c relay.Credentials) map[string]string {
	t.Helper()
	env := map[string]string{
		"GATEWAY_CONNECTION_STRING": fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s;UseDevelopmentEmulator=true",
			c.Host, c.KeyName, c.Key, c.EntityPath),
		"GATEWAY_POOL_SIZE":        "2",
		"GATEWAY_SHUTDOWN_TIMEOUT": "10s",
		"GATEWAY_DIAL_TIMEOUT":     "5s",
		"GATEWAY_ADMIN_ADDR":       "127.0.0.1:0", // three replicas: not the default 9090
	}
	usage, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("gateway -h: %v\n%s", err, usage)
	}
	if strings.Contains(string(usage), "GATEWAY_DRAIN_DELAY") {
		env["GATEWAY_DRAIN_DELAY"] = "1s" // 40 readiness probes of the proxy
	} else {
		t.Log("this gateway has no GATEWAY_DRAIN_DELAY: requests racing the SIGTERM may be dropped")
	}
	return env
}

// receivers are in-process listeners recording how often each message id
// arrives.
type receivers struct {
	mu   sync.Mutex
	seen map[string]int
	wake chan struct{} // signalled (buffer 1) on every message
}

// startReceivers connects n listeners to the hybrid connection and waits
// until each is connected.
func startReceivers(t *testing.T, c relay.Credentials, n int) *receivers {
	t.Helper()
	r := &receivers{seen: map[string]int{}, wake: make(chan struct{}, 1)}
	log := slog.New(slog.NewTextHandler(testlog.Output(t), nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		l, err := relay.NewListener(relay.ListenerConfig{Credentials: c, ConnHandler: r.serve},
			log.With("component", fmt.Sprintf("listener-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = l.Run(ctx) })
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = l.WaitConnected(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("listener %d: %v", i, err)
		}
	}
	return r
}

// serve records the id of every {"id","message"} envelope on c.
func (r *receivers) serve(ctx context.Context, c *relay.ListenerConn) {
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var env struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(data, &env)
		r.mu.Lock()
		r.seen[env.ID]++
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *receivers) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		out[k] = v
	}
	return out
}

// waitFor waits until every id has arrived, or the timeout.
func (r *receivers) waitFor(t *testing.T, ids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		got := r.counts()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-r.wake:
		case <-deadline:
			t.Errorf("%d accepted messages never reached a listener", missing)
			return
		}
	}
}

// roundRobin is a TCP load balancer: each accepted connection goes to the
// next replica whose /readyz last answered 200 (probed every 25 ms, as a
// Kubernetes Service follows its endpoints' readiness), and a refused
// connect is retried on the next replica.
type roundRobin struct {
	ln       net.Listener
	backends []*backend
	next     atomic.Uint64
	wg       sync.WaitGroup
}

type backend struct {
	addr  string
	ready atomic.Bool
	conns atomic.Int64
}

func startRoundRobin(t *testing.T, addrs []string) *roundRobin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &roundRobin{ln: ln}
	for _, a := range addrs {
		p.backends = append(p.backends, &backend{addr: a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.wg.Go(func() { p.probe(ctx) })
	p.wg.Go(p.accept)
	t.Cleanup(func() { cancel(); ln.Close(); p.wg.Wait() })
	return p
}

func (p *roundRobin) addr() string      { return p.ln.Addr().String() }
func (p *roundRobin) conns(i int) int64 { return p.backends[i].conns.Load() }

// probe keeps every backend's ready flag current until ctx ends.
func (p *roundRobin) probe(ctx context.Context) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, b := range p.backends {
			resp, err := client.Get("http://" + b.addr + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				resp.Body.Close()
			}
			b.ready.Store(ok)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitAllReady waits until the proxy sees every backend ready.
func (p *roundRobin) waitAllReady(t *testing.T, timeout time.Duration, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		all := true
		for _, b := range p.backends {
			all = all && b.ready.Load()
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not ready after %v\n%s", timeout, dump())
		}
		<-tick.C
	}
}

func (p *roundRobin) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

// handle pipes c to a backend; with none reachable it closes c.
func (p *roundRobin) handle(c net.Conn) {
	defer c.Close()
	up := p.dial()
	if up == nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
	})
	_, _ = io.Copy(c, up)
	_ = c.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

// dial connects to the next ready backend, trying the others when a
// connect fails; when none is ready it tries them all.
func (p *roundRobin) dial() net.Conn {
	start := int(p.next.Add(1))
	for _, readyOnly := range []bool{true, false} {
		for i := range p.backends {
			b := p.backends[(start+i)%len(p.backends)]
			if readyOnly && !b.ready.Load() {
				continue
			}
			if c, err := net.DialTimeout("tcp", b.addr, 2*time.Second); err == nil {
				b.conns.Add(1)
				return c
			}
		}
	}
	return nil
}

// replicaLoad posts n messages with ids m-0 … m-(n-1).
type replicaLoad struct {
	base       string
	n          int
	client     *http.Client
	onAccepted func(accepted int64) // called after each 202 with the running count

	accepted atomic.Int64
	retries  atomic.Int64
	mu       sync.Mutex
	ids      []string
	errs     []error
}

func newReplicaLoad(base string, n int) *replicaLoad {
	return &replicaLoad{base: base, n: n, client: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true}, // every request is balanced anew
	}}
}

// run sends every message from workers goroutines and returns when all
// are answered.
func (l *replicaLoad) run(workers int) {
	ids := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for id := range ids {
				l.send(id)
			}
		})
	}
	for i := range l.n {
		ids <- fmt.Sprintf("m-%d", i)
	}
	close(ids)
	wg.Wait()
}

// send posts one message until it is accepted, retrying 503s (up to 50
// times); a transport error or another status is recorded.
func (l *replicaLoad) send(id string) {
	body := fmt.Sprintf(`{"id":%q,"message":{"n":%q}}`, id, id)
	for range 50 {
		resp, err := l.client.Post(l.base+"/messages", "application/json", strings.NewReader(body))
		if err != nil {
			l.fail(fmt.Errorf("%s: %w", id, err))
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			l.mu.Lock()
			l.ids = append(l.ids, id)
			l.mu.Unlock()
			if n := l.accepted.Add(1); l.onAccepted != nil {
				l.onAccepted(n)
			}
			return
		case http.StatusServiceUnavailable:
			l.retries.Add(1)
		default:
			l.fail(fmt.Errorf("%s: %d %s", id, resp.StatusCode, b))
			return
		}
	}
	l.fail(fmt.Errorf("%s: still 503 after 50 tries", id))
}

func (l *replicaLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *replicaLoad) errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

func (l *replicaLoad) acceptedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids
}
