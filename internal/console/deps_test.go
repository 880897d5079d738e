package console

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps the direction of doc.go: console sees relay's types only,
// and never the api (which mounts it), the emulator, config, chi or
// Prometheus.
func TestDeps(t *testing.T) {
	t.Parallel()
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		for _, banned := range []string{"prometheus", "go-chi", "/internal/api", "/internal/emulator", "/internal/config", "/internal/metrics", "/cmd/"} {
			if strings.Contains(imp, banned) {
				t.Errorf("internal/console imports %s", imp)
			}
		}
	}
}
