package emulator_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// nodeDir holds Microsoft's published Node clients (hyco-ws 1.0.5,
// hyco-https 1.4.5, pinned in package-lock.json) and the scripts driving
// them. `npm ci --prefix testdata/node-interop` installs them.
var nodeDir, _ = filepath.Abs("../../testdata/node-interop")

// requireNode returns the node binary, skipping when node or the npm
// packages are missing, except in CI (CI set), where it fails.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(msg string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	for _, pkg := range []string{"hyco-ws", "hyco-https"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", pkg, "package.json")); err != nil {
			missing("testdata/node-interop/node_modules/" + pkg + " is missing (npm ci --prefix testdata/node-interop --no-audit --no-fund)")
		}
	}
	return bin
}

// nodeProc is a running Node script; lines carries its stdout lines, done
// is closed when it has exited, after which err holds Wait's result.
type nodeProc struct {
	lines  <-chan string
	stderr *bytes.Buffer
	done   <-chan struct{}
	err    error
	key    string // must never be printed
}

// startNode runs script from nodeDir with the relay URL and the key of c in
// its environment (the script mints its own token with the package's
// createRelayToken). The process is killed at cleanup; it also exits when
// its stdin closes, should the test binary die.
func startNode(t *testing.T, bin, script, relayURL string, c relay.Credentials, env ...string) *nodeProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, filepath.Join(nodeDir, script))
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), append([]string{
		"RELAY_URL=" + relayURL, "RELAY_KEY_NAME=" + c.KeyName, "RELAY_KEY=" + c.Key,
	}, env...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{stderr: &bytes.Buffer{}, key: c.Key}
	cmd.Stderr = p.stderr // read only after Wait
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 256)
	done := make(chan struct{})
	p.lines, p.done = lines, done
	go func() {
		// Wait only after stdout's EOF, so no line is lost (os/exec).
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.err = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		cancel()
		<-done
		if e := p.stderr.String(); strings.Contains(e, "sig=") || strings.Contains(e, c.Key) {
			t.Errorf("%s printed a token or key on stderr", script)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", script, p.stderr.String())
		}
	})
	return p
}

// waitLine reads stdout lines until one starts with prefix and returns it.
func (p *nodeProc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(testTimeout)
	var seen []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("node exited before printing %q; stdout %q", prefix, seen)
			}
			if strings.Contains(l, "sig=") || strings.Contains(l, p.key) {
				t.Fatalf("node printed a token or key on stdout")
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no %q line from node within %v; stdout %q", prefix, testTimeout, seen)
		}
	}
}

// nodeURL is the WebSocket URL a script gets verbatim: built by relaygate,
// without a token (§11.1: the packages' own builders hard-code wss://…:443).
func nodeURL(c relay.Credentials, action relay.Action) string {
	return c.WebSocketURL(action, relay.URLOptions{}).String()
}

// TestNodeWSListenerEchoesGoSender: a hyco-ws relayed server receives a
// message from relay.Dial through the emulator and echoes it back.
func TestNodeWSListenerEchoesGoSender(t *testing.T) {
	t.Parallel()
	bin := requireNode(t)
	s := emulatortest.Start(t)
	lc := s.ListenerCredentials("hc1")
	p := startNode(t, bin, "ws-listener.js", nodeURL(lc, relay.ActionListen), lc)
	p.waitLine(t, "ready")
	testlog.WaitFor(t, "hyco-ws listener registered", func() bool { return s.ListenerCount("hc1") == 1 })

	ctx := ctxT(t)
	ws, err := relay.Dial(ctx, s.Credentials("hc1"), relay.DialOptions{})
	if err != nil {
		t.Fatalf("relay.Dial to the hyco-ws listener: %v", err)
	}
	defer ws.CloseNow()
	const msg = "hello from go ✓"
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if got := p.waitLine(t, "message: "); got != "message: "+msg {
		t.Fatalf("listener printed %q, want %q", got, "message: "+msg)
	}
	typ, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if typ != websocket.MessageText || string(data) != msg {
		t.Fatalf("echo %v %q, want text %q", typ, data, msg)
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// TestNodeWSSenderReachesGoListener: hyco-ws relayedConnect reaches a
// relay.Listener through the emulator, and the listener's echo comes back.
func TestNodeWSSenderReachesGoListener(t *testing.T) {
	t.Parallel()
	bin := requireNode(t)
	s := emulatortest.Start(t)
	got := startGoListener(t, s, "hc1", true)

	// A token signed with a wrong key is refused (the check is real).
	sc := s.Credentials("hc1")
	bad := sc
	bad.Key = emulatortest.RandomKey()
	pb := startNode(t, bin, "ws-sender.js", nodeURL(bad, relay.ActionConnect), bad)
	select {
	case <-pb.done:
		if pb.err == nil || !strings.Contains(pb.stderr.String(), "401") {
			t.Fatalf("ws-sender.js with a wrong key: %v, stderr %q; want exit 1 after a 401", pb.err, pb.stderr.String())
		}
	case <-time.After(testTimeout):
		t.Fatal("ws-sender.js with a wrong key did not exit")
	}

	const msg = "hello from node ✓"
	p := startNode(t, bin, "ws-sender.js", nodeURL(sc, relay.ActionConnect), sc, "RELAY_MESSAGE="+msg)
	if m := wait(t, got); m != msg {
		t.Fatalf("Go listener got %q, want %q", m, msg)
	}
	if e := p.waitLine(t, "echo: "); e != "echo: "+msg {
		t.Fatalf("sender printed %q, want %q", e, "echo: "+msg)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("ws-sender.js: %v", p.err)
		}
	case <-time.After(testTimeout):
		t.Fatal("ws-sender.js did not exit after the echo")
	}
}

// TestNodeHTTPSListenerAnswersHTTPSender: a hyco-https relayed server
// answers HTTP request-mode requests from relay.HTTPSender: a small body
// (inline on the control channel) and a 150 kB one (request and response
// through a rendezvous).
func TestNodeHTTPSListenerAnswersHTTPSender(t *testing.T) {
	t.Parallel()
	bin := requireNode(t)
	s := emulatortest.Start(t)
	lc := s.ListenerCredentials("hc1")
	p := startNode(t, bin, "https-listener.js", nodeURL(lc, relay.ActionListen), lc)
	p.waitLine(t, "ready")
	testlog.WaitFor(t, "hyco-https listener registered", func() bool { return s.ListenerCount("hc1") == 1 })

	big := make([]byte, 150_000)
	rand.Read(big)
	sender := &relay.HTTPSender{Credentials: s.Credentials("hc1")}
	for _, tc := range []struct {
		name, method, suffix string
		query                url.Values
		body                 []byte
		channel              string // how the listener got the request
	}{
		{"small", http.MethodPost, "echo/small", url.Values{"q": {"1"}}, []byte("small body from go"), "control"},
		{"large", http.MethodPut, "echo/large", nil, big, "rendezvous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := sender.Do(ctxT(t), tc.method, tc.suffix, tc.query, nil, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatalf("HTTPSender.Do: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %s, want 201 from the listener; body %.200q", resp.Status, body)
			}
			if resp.Header.Get("Via") == "" {
				t.Errorf("response lacks the relay's Via header: %v", resp.Header)
			}
			if m := resp.Header.Get("X-Echo-Method"); m != tc.method {
				t.Errorf("listener saw method %q, want %q", m, tc.method)
			}
			wantURL := "/hc1/" + tc.suffix
			if tc.query != nil {
				wantURL += "?" + tc.query.Encode()
			}
			if u := resp.Header.Get("X-Echo-Url"); u != wantURL {
				t.Errorf("listener saw URL %q, want %q", u, wantURL)
			}
			if !bytes.Equal(body, tc.body) {
				t.Errorf("echoed body: %d bytes, want the %d sent", len(body), len(tc.body))
			}
			want := fmt.Sprintf("request: %s %s %d %s", tc.method, wantURL, len(tc.body), tc.channel)
			if l := p.waitLine(t, "request: "); l != want {
				t.Errorf("listener printed %q, want %q", l, want)
			}
		})
	}
}
