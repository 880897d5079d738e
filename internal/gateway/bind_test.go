package gateway

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

// TestInsecureBindWarns checks that a non-loopback bind allowed by
// GATEWAY_ALLOW_INSECURE_BIND without API keys logs a WARN line, and that
// protected or loopback binds do not.
func TestInsecureBindWarns(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		addr     string
		keys     []string
		allow    bool
		wantWarn bool
	}{
		{"all interfaces, allowed without keys", "0.0.0.0:0", nil, true, true},
		{"all interfaces, API keys", "0.0.0.0:0", []string{"0123456789abcdef"}, false, false},
		{"loopback, allow set", "127.0.0.1:0", nil, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.Addr, cfg.APIKeys, cfg.AllowInsecureBind = tt.addr, tt.keys, tt.allow
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			logs := testlog.Tee(t)
			g, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.shutdown() })
			warned := strings.Contains(logs.String(), `level=WARN msg="INSECURE BIND:`)
			if warned != tt.wantWarn {
				t.Errorf("WARN INSECURE BIND logged: %v, want %v\n%s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}
