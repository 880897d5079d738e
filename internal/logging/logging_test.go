package logging_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/logging"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, level, format string
		wantDebug, wantInfo bool
		wantJSON            bool
	}{
		{"debug text", "debug", "text", true, true, false},
		{"info json", "info", "json", false, true, true},
		{"upper case level", "WARN", "text", false, false, false},
		{"error", "error", "json", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			log, err := logging.New(&b, tt.level, tt.format)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i")
			log.Error("e")
			out := b.String()
			if got := strings.Contains(out, `msg=d`) || strings.Contains(out, `"msg":"d"`); got != tt.wantDebug {
				t.Errorf("debug logged: got %v, want %v:\n%s", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, `msg=i`) || strings.Contains(out, `"msg":"i"`); got != tt.wantInfo {
				t.Errorf("info logged: got %v, want %v:\n%s", got, tt.wantInfo, out)
			}
			first, _, _ := strings.Cut(out, "\n")
			if got := json.Valid([]byte(first)); got != tt.wantJSON {
				t.Errorf("JSON: got %v, want %v: %s", got, tt.wantJSON, first)
			}
		})
	}
}

func TestNewRejectsUnknownLevelAndFormat(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ level, format, want string }{
		{"verbose", "text", "log level"},
		{"info", "yaml", "log format"},
		{"", "text", "log level"},
	} {
		log, err := logging.New(&bytes.Buffer{}, tt.level, tt.format)
		if err == nil || log != nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q): got %v, %v, want an error naming the %s", tt.level, tt.format, log, err, tt.want)
		}
	}
}
