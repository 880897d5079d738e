package emulatortest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// NodeDir is testdata/node-interop: Microsoft's published Node clients
// (hyco-ws, hyco-https, pinned in package-lock.json) and the scripts that
// drive them. `npm ci --prefix testdata/node-interop` installs them.
var NodeDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "node-interop")
}()

// RequireNode returns the node binary, skipping the test when node or the
// npm packages are missing, except in CI (CI set), where it fails.
func RequireNode(tb testing.TB) string {
	tb.Helper()
	missing := func(msg string) {
		tb.Helper()
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	bin, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	for _, pkg := range []string{"hyco-ws", "hyco-https"} {
		if _, err := os.Stat(filepath.Join(NodeDir, "node_modules", pkg, "package.json")); err != nil {
			missing("testdata/node-interop/node_modules/" + pkg + " is missing (npm ci --prefix testdata/node-interop --no-audit --no-fund)")
		}
	}
	return bin
}

// NodeProc is a running Node script.
type NodeProc struct {
	lines  <-chan string
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
	key    string // must never be printed
}

// StartNode runs script from NodeDir with RELAY_URL=relayURL and the key of
// c in its environment (the script mints its own token). The process is
// killed at cleanup, which fails the test if it printed the key or a
// token; it also exits when its stdin closes, should the test binary die.
func StartNode(tb testing.TB, bin, script, relayURL string, c relay.Credentials, env ...string) *NodeProc {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, filepath.Join(NodeDir, script))
	cmd.Dir = NodeDir
	cmd.Env = append(os.Environ(), append([]string{
		"RELAY_URL=" + relayURL, "RELAY_KEY_NAME=" + c.KeyName, "RELAY_KEY=" + c.Key,
	}, env...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &NodeProc{stderr: &bytes.Buffer{}, key: c.Key, done: make(chan struct{})}
	cmd.Stderr = p.stderr // read only after Wait
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	lines := make(chan string, 1024)
	p.lines = lines
	go func() {
		// Wait only after stdout's EOF, so no line is lost (os/exec).
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		stdin.Close()
		cancel()
		<-p.done
		if e := p.stderr.String(); strings.Contains(e, "sig=") || strings.Contains(e, c.Key) {
			tb.Errorf("%s printed a token or key on stderr", script)
		}
		if tb.Failed() {
			tb.Logf("%s stderr:\n%s", script, p.stderr.String())
		}
	})
	return p
}

// WaitLine reads stdout lines until one starts with prefix and returns it,
// failing the test after timeout, when the process exits first, or when a
// line shows the key or a token.
func (p *NodeProc) WaitLine(tb testing.TB, prefix string, timeout time.Duration) string {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				tb.Fatalf("node exited before printing %q; stdout %q", prefix, seen)
			}
			if strings.Contains(l, "sig=") || strings.Contains(l, p.key) {
				tb.Fatalf("node printed a token or key on stdout")
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			seen = append(seen, l)
		case <-deadline.C:
			tb.Fatalf("no %q line from node within %v; stdout %q", prefix, timeout, seen)
		}
	}
}

// Done is closed when the process has exited; Err then holds Wait's
// result and Stderr what it printed there.
func (p *NodeProc) Done() <-chan struct{} { return p.done }

// Err is Wait's result; call it only after Done is closed.
func (p *NodeProc) Err() error { return p.err }

// Stderr is what the process printed on stderr; call it only after Done is
// closed.
func (p *NodeProc) Stderr() string { return p.stderr.String() }
