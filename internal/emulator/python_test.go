package emulator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// debianPython is Debian's interpreter, which has python3-websockets; a
// pyenv python3 earlier on PATH would not.
const debianPython = "/usr/bin/python3"

// seedDir holds the corrected seed quickstart scripts.
var seedDir, _ = filepath.Abs("../../testdata/seed-python")

// requirePython skips when python3-websockets is missing, except in CI
// (CI set), where .ci/run installs it and its absence is a failure.
func requirePython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import websockets; print(websockets.__version__)").CombinedOutput()
	if err != nil {
		msg := "python3-websockets is not available (apt-get install python3-websockets): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// seedWorkdir writes the seed's config.json for entity on s (plain ws://)
// into a fresh directory, the scripts' working directory.
func seedWorkdir(t *testing.T, s *emulator.Server, entity string) string {
	t.Helper()
	c := s.ListenerCredentials(entity)
	dir := t.TempDir()
	cfg, _ := json.Marshal(map[string]string{
		"namespace": s.Addr(), "path": entity, "keyrule": c.KeyName, "key": c.Key, "scheme": "ws",
	})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func python(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, debianPython, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+seedDir, "PYTHONDONTWRITEBYTECODE=1")
	return cmd
}

// TestSeedTokenAccepted: a token from the seed's createSasToken opens a
// control channel (header and sb-hc-token query).
func TestSeedTokenAccepted(t *testing.T) {
	t.Parallel()
	requirePython(t)
	s := emulatortest.Start(t)
	c := s.ListenerCredentials("hc1")
	out, err := python(ctxT(t), t.TempDir(), "-c",
		"import sys, relaylib; print(relaylib.createSasToken(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]))",
		s.Addr(), "hc1", c.KeyName, c.Key).Output()
	if err != nil {
		t.Fatalf("createSasToken: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A") {
		t.Fatalf("unexpected token shape %.40q…", tok)
	}
	ws, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), tok, nil)
	if err != nil {
		t.Fatalf("listen with the seed's token: %v (%s)", err, status(resp))
	}
	ws.Close()
	// Wrong key → 401, to show the check is real.
	bad := strings.Replace(tok, "&sig=", "&sig=A", 1)
	if _, resp, _ := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), bad, nil); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("tampered seed token: %s, want 401", status(resp))
	}
}

// TestSeedSenderReachesRelayListener: the corrected sender.py sends through
// the emulator to relaygate's relay.Listener.
func TestSeedSenderReachesRelayListener(t *testing.T) {
	t.Parallel()
	requirePython(t)
	s := emulatortest.Start(t)
	got := startGoListener(t, s, "hc1", false)

	dir := seedWorkdir(t, s, "hc1")
	out, err := python(ctxT(t), dir, filepath.Join(seedDir, "sender.py")).CombinedOutput()
	if err != nil || strings.Contains(string(out), "ERROR") {
		t.Fatalf("sender.py: %v\n%s", err, out)
	}
	want := `{"message": "This is a message to Azure Relay Hybrid Connections!"}`
	if msg := wait(t, got); msg != want {
		t.Fatalf("listener got %q, want %q", msg, want)
	}
	if strings.Contains(string(out), "sig=") {
		t.Errorf("sender.py printed its token:\n%s", out)
	}
}

// startGoListener runs a relay.Listener on entity until the test ends and
// returns the text messages it receives (the first few; later ones are
// dropped rather than blocking). With echo, it writes each message back.
func startGoListener(t *testing.T, s *emulator.Server, entity string, echo bool) <-chan string {
	t.Helper()
	got := make(chan string, 4)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: s.ListenerCredentials(entity),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				if typ == relay.MessageText {
					select {
					case got <- string(data):
					default:
					}
				}
				if echo {
					if err := c.Write(ctx, typ, data); err != nil {
						return
					}
				}
			}
		},
	}, testlog.Logger(t).With("component", "listener"))
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- l.Run(context.Background()) }()
	t.Cleanup(func() { l.Close(); <-runDone })
	if err := l.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSeedListenerAcceptsGoSender: the corrected listener.py does the
// accept handshake and receives a Go sender's message.
func TestSeedListenerAcceptsGoSender(t *testing.T) {
	t.Parallel()
	requirePython(t)
	s := emulatortest.Start(t)
	dir := seedWorkdir(t, s, "hc1")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := python(ctx, dir, "-u", filepath.Join(seedDir, "listener.py"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	testlog.WaitFor(t, "listener.py connected", func() bool { return s.ListenerCount("hc1") == 1 })

	c := s.Credentials("hc1")
	ws, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), token(t, c), nil)
	if err != nil {
		t.Fatalf("Go sender: %v (%s)", err, status(resp))
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello from go")); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(testTimeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("listener.py exited before receiving the message")
			}
			if strings.Contains(l, "Received message: hello from go") {
				return
			}
		case <-deadline:
			t.Fatal("listener.py did not log the message")
		}
	}
}
