package gateway_test

import (
	"runtime/debug"
	"testing"

	"github.com/relaygate/relaygate/internal/gateway"
)

// TestTuneGC: GCPercent applies only when GOGC is unset and a memory limit
// bounds the heap. Not parallel: it changes the process's GC setting.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, tc := range []struct {
		name  string
		gogc  string
		limit int64
		want  int
	}{
		{"explicit GOGC wins", "100", 48 << 20, 100},
		{"no memory limit", "", 0, 100},
		{"GOGC unset, limit", "", 48 << 20, gateway.GCPercent},
	} {
		debug.SetGCPercent(100)
		set := gateway.TuneGC(tc.gogc, tc.limit)
		if got := debug.SetGCPercent(100); got != tc.want || set != (tc.want != 100) {
			t.Errorf("%s: GC percent %d (set %v), want %d", tc.name, got, set, tc.want)
		}
	}
}
