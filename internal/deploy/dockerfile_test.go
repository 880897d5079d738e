package deploy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// imageEnv returns the ENV of the Dockerfile's final stage (ENV KEY=VALUE
// lines) and the ports it EXPOSEs.
func imageEnv(t *testing.T) (env map[string]string, exposed []string) {
	t.Helper()
	env = map[string]string{}
	lines := strings.Split(readFile(t, "Dockerfile"), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case strings.EqualFold(f[0], "FROM"): // a new stage starts afresh
			env, exposed = map[string]string{}, nil
		case strings.EqualFold(f[0], "ENV"):
			for _, kv := range f[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: %q: use the ENV KEY=VALUE form", l)
				}
				env[k] = strings.Trim(v, `"`)
			}
		case strings.EqualFold(f[0], "EXPOSE"):
			exposed = append(exposed, f[1:]...)
		}
	}
	return env, exposed
}

// gatewayProcess is the gateway binary running with an image's
// environment.
type gatewayProcess struct {
	addr string       // the bound address, "" if it exited
	logs bytes.Buffer // stderr so far; read only after exited is closed or addr is set
	mu   sync.Mutex
	err  error // exit error, once exited is closed
	exit chan struct{}
}

func (p *gatewayProcess) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// runGateway starts the gateway binary bin with exactly env and returns
// once it logs "gateway listening" (addr set) or exits.
func runGateway(t *testing.T, bin string, env map[string]string) *gatewayProcess {
	t.Helper()
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProcess{exit: make(chan struct{})}
	listening := make(chan string, 1)
	addrRE := regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				listening <- m[1]
			}
		}
		p.err = cmd.Wait()
		close(p.exit)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exit:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exit
		}
	})
	select {
	case p.addr = <-listening:
	case <-p.exit:
	case <-time.After(60 * time.Second):
		t.Fatalf("the gateway neither listened nor exited:\n%s", p.stderr())
	}
	return p
}

// TestDockerfileEnvironment runs the gateway with the image's environment
// and checks the documented behaviour: it listens on every interface (so a
// published port reaches it), refuses to start without API keys, serves
// with them, and serves without them only after an explicit opt-out that
// it logs as a WARN line.
func TestDockerfileEnvironment(t *testing.T) {
	env, exposed := imageEnv(t)
	host, port, err := net.SplitHostPort(env["GATEWAY_ADDR"])
	if err != nil || host != "0.0.0.0" {
		t.Fatalf("Dockerfile: GATEWAY_ADDR=%q, want 0.0.0.0:PORT", env["GATEWAY_ADDR"])
	}
	if len(exposed) != 1 || exposed[0] != port {
		t.Errorf("Dockerfile: EXPOSE %v, want the port of GATEWAY_ADDR (%s)", exposed, port)
	}
	setEnv(t, env)
	if err := binaries["gateway"].load(); err == nil || !strings.Contains(err.Error(), "GATEWAY_API_KEYS") {
		t.Errorf("the image's environment alone: got %v, want a refusal naming GATEWAY_API_KEYS", err)
	}

	bin := filepath.Join(buildBinaries(t, "gateway"), "gateway")
	const apiKey = "dockerfile-test-key-0123456789"
	for _, tt := range []struct {
		name       string
		extra      map[string]string
		wantStart  bool
		wantWarn   bool
		wantPOST   int // without an API key
		wantStderr string
	}{
		{"no keys: refuses", nil, false, false, 0, "GATEWAY_ADDR: a non-loopback address needs GATEWAY_API_KEYS (or GATEWAY_ALLOW_INSECURE_BIND=true)"},
		{"API keys", map[string]string{"GATEWAY_API_KEYS": apiKey}, true, false, http.StatusUnauthorized, "LOCAL MODE"},
		{"explicit opt-out", map[string]string{"GATEWAY_ALLOW_INSECURE_BIND": "true"}, true, true, http.StatusAccepted, "LOCAL MODE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run := map[string]string{}
			for k, v := range env {
				run[k] = v
			}
			for k, v := range tt.extra {
				run[k] = v
			}
			if tt.wantStart {
				run["GATEWAY_ADDR"] = net.JoinHostPort(host, "0") // same interfaces, a free port
				run["GATEWAY_DRAIN_DELAY"] = "0s"                 // no load balancer to wait for here
			}
			p := runGateway(t, bin, run)
			if !tt.wantStart {
				<-p.exit
				if p.addr != "" || p.err == nil || !strings.Contains(p.stderr(), tt.wantStderr) {
					t.Fatalf("got addr %q, exit %v, want a refusal %q:\n%s", p.addr, p.err, tt.wantStderr, p.stderr())
				}
				return
			}
			if p.addr == "" {
				t.Fatalf("exited (%v):\n%s", p.err, p.stderr())
			}
			checkServes(t, p, tt.wantPOST)
			if warned := strings.Contains(p.stderr(), `level=WARN msg="INSECURE BIND:`); warned != tt.wantWarn {
				t.Errorf("INSECURE BIND warning: %v, want %v:\n%s", warned, tt.wantWarn, p.stderr())
			}
			if !strings.Contains(p.stderr(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, p.stderr())
			}
		})
	}
}

// checkServes checks that the gateway bound every interface and answers
// on loopback: /healthz 200, and POST /messages (without an API key) with
// wantPOST.
func checkServes(t *testing.T, p *gatewayProcess, wantPOST int) {
	t.Helper()
	host, port, err := net.SplitHostPort(p.addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		t.Fatalf("listening on %q, want every interface", p.addr)
	}
	base := "http://" + net.JoinHostPort("127.0.0.1", port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/healthz", "", http.StatusOK},
		{"POST", "/messages", `{"message":"hi"}`, wantPOST},
	} {
		req, _ := http.NewRequestWithContext(ctx, r.method, base+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Errorf("%s %s: %d, want %d", r.method, r.path, resp.StatusCode, r.want)
		}
	}
}
