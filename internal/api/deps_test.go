package api_test

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the dependency direction of STYLE.md §7: api sees relay's
// types and sentinels, never Prometheus, the emulator, config or cmd.
func TestDeps(t *testing.T) {
	t.Parallel()
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		for _, banned := range []string{"prometheus", "/internal/emulator", "/internal/config", "/internal/metrics", "/cmd/"} {
			if strings.Contains(imp, banned) {
				t.Errorf("internal/api imports %s", imp)
			}
		}
	}
}
