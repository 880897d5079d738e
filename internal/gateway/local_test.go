package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

// TestLocalMode runs the gateway with no credentials and pastes the
// banner's curl command into a shell.
func TestLocalMode(t *testing.T) {
	t.Parallel()
	logs := testlog.Tee(t)
	log := slog.New(slog.NewTextHandler(logs, nil))
	cfg := testConfig()
	var out bytes.Buffer
	gw, err := start(context.Background(), cfg, log, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.shutdown()
	banner := out.String()
	if !strings.Contains(banner, "LOCAL MODE") {
		t.Fatalf("banner: %s", banner)
	}
	line := regexp.MustCompile(`(?m)^\s+(curl .*)$`).FindStringSubmatch(banner)
	if line == nil {
		t.Fatalf("no curl command in the banner:\n%s", banner)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	cmd := exec.Command("sh", "-c", line[1]+" --silent --show-error --max-time 10")
	got, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(got, []byte("202 Accepted")) || !bytes.Contains(got, []byte(`"status":"sent"`)) {
		t.Fatalf("%s: %v\n%s", line[1], err, got)
	}
	testlog.WaitFor(t, "the built-in listener to log the message", func() bool {
		return strings.Contains(logs.String(), `msg="listener received message"`) && strings.Contains(logs.String(), `\"message\":\"hello\"`)
	})
}
