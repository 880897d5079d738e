package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// buildBinaries builds the image's binaries into a temporary directory.
// Unlike the Dockerfile it leaves CGO as the toolchain has it, so the
// packages compiled by go vet and earlier builds are reused.
func buildBinaries(t *testing.T, names ...string) string {
	t.Helper()
	// go test puts its own GOROOT/bin first on the test's PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// process is one running service binary.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *testlog.Buffer // wake waiters on every write (Wrote)
	done           chan error
}

// startService runs bin with env (plus PATH and HOME only); it is stopped
// with SIGINT at cleanup.
func startService(t *testing.T, name, bin string, args []string, env map[string]string) *process {
	t.Helper()
	p := &process{name: name, stdout: &testlog.Buffer{}, stderr: &testlog.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.stop(t)
		}
	})
	return p
}

// stop sends SIGINT and checks the process exits 0 in time.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGINT; stderr:\n%s", p.name, err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not exit within 20s of SIGINT", p.name)
	}
}

// TestComposeStackAsProcesses runs what `docker compose up` runs — the three
// binaries with their docker-compose.yml environments, the emulator's host
// name and the ports mapped to free ports on 127.0.0.1 — and then does the
// README's one curl: the message must appear on the listener's stdout.
func TestComposeStackAsProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the three binaries")
	}
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGINT")
	}
	cf := loadCompose(t)
	rules, _ := emulatorSetup(t, cf.Services["relay-emulator"])
	bins := buildBinaries(t, "relay-emulator", "listener", "gateway")
	emPort, gwPort := freePort(t), freePort(t)

	_, emContainerPort, _ := net.SplitHostPort(cf.Services["relay-emulator"].Environment[emulatorAddrVar])
	_, gwContainerPort, _ := net.SplitHostPort(cf.Services["gateway"].Environment["GATEWAY_ADDR"])
	// Inside compose the services reach each other by name; here by loopback.
	mapped := func(name string) map[string]string {
		env := serviceEnv(t, cf.Services[name], nil)
		for k, v := range env {
			v = strings.ReplaceAll(v, "relay-emulator:"+emContainerPort, "127.0.0.1:"+emPort)
			v = strings.ReplaceAll(v, "0.0.0.0:"+emContainerPort, "127.0.0.1:"+emPort)
			v = strings.ReplaceAll(v, "0.0.0.0:"+gwContainerPort, "127.0.0.1:"+gwPort)
			env[k] = v
		}
		return env
	}
	var procs []*process
	for _, name := range []string{"relay-emulator", "listener", "gateway"} { // depends_on order
		s := cf.Services[name]
		procs = append(procs, startService(t, name, filepath.Join(bins, binaryOf(t, name, s)), s.Command, mapped(name)))
	}
	listener := procs[1]
	dump := func() string {
		var b strings.Builder
		for _, p := range procs {
			fmt.Fprintf(&b, "--- %s stdout:\n%s--- %s stderr:\n%s", p.name, p.stdout.String(), p.name, p.stderr.String())
		}
		return b.String()
	}

	// Wait until the gateway is ready (it has a connection to the listener).
	base := "http://127.0.0.1:" + gwPort
	ready := false
	t.Cleanup(func() {
		if !ready {
			t.Logf("the gateway never got ready:\n%s", dump())
		}
	})
	testlog.WaitFor(t, "the gateway to be ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ready = true

	// The README's curl.
	resp, err := http.Post(base+"/messages", "application/json", strings.NewReader(`{"message":"hello from compose"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /messages: got %d %s\n%s", resp.StatusCode, body, dump())
	}

	// The message arrives as one JSON line on the listener's stdout.
	timeout := time.After(20 * time.Second)
	for {
		if line, ok := findMessage(t, listener.stdout.String(), "hello from compose"); ok {
			if line["type"] != "text" || line["connection"] == "" {
				t.Errorf("listener line: got %v", line)
			}
			break
		}
		select {
		case <-listener.stdout.Wrote():
		case <-timeout:
			t.Fatalf("the message never reached the listener's stdout\n%s", dump())
		}
	}

	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(t)
	}
	for _, p := range procs {
		for _, out := range []string{p.stdout.String(), p.stderr.String()} {
			for _, r := range rules {
				if strings.Contains(out, r.Key) {
					t.Errorf("%s printed the key of rule %s", p.name, r.Name)
				}
			}
		}
	}
}

// findMessage returns the stdout line whose text holds a gateway message
// {"message": want, "id": …}.
func findMessage(t *testing.T, stdout, want string) (map[string]any, bool) {
	t.Helper()
	// Only complete lines: a pipe may deliver a line in pieces.
	stdout = stdout[:strings.LastIndexByte(stdout, '\n')+1]
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("listener stdout line %q is not JSON: %v", sc.Text(), err)
		}
		text, _ := line["text"].(string)
		var m struct {
			Message string `json:"message"`
			ID      string `json:"id"`
		}
		if json.Unmarshal([]byte(text), &m) == nil && m.Message == want && m.ID != "" {
			return line, true
		}
	}
	return nil, false
}
