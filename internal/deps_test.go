package internal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/relaygate/relaygate"

// layerRules is the dependency direction of STYLE.md §1 and §7, checked
// against every package's transitive, non-test imports. A rule applies to
// the package named by from and, if subpackages, to the packages below it.
var layerRules = []struct {
	name        string
	from        string // import path relative to the module ("" is every package)
	subpackages bool
	forbid      []string // import path prefixes
	allow       []string // exceptions to forbid (exact import paths)
}{
	{
		name:   "relay imports neither chi, Prometheus nor another package of this module",
		from:   "internal/relay",
		forbid: []string{"github.com/go-chi/", "github.com/prometheus/", module + "/"},
		allow:  []string{module + "/internal/relay"},
	},
	{
		name:   "api sees relay's types, never Prometheus, the emulator, config or metrics",
		from:   "internal/api",
		forbid: []string{"github.com/prometheus/", module + "/internal/emulator", module + "/internal/config", module + "/internal/metrics"},
	},
	{
		name: "console sees relay's types, never chi, Prometheus, the api that mounts it, the emulator, config or metrics",
		from: "internal/console",
		forbid: []string{"github.com/go-chi/", "github.com/prometheus/", module + "/internal/api",
			module + "/internal/emulator", module + "/internal/config", module + "/internal/metrics"},
	},
	{
		name:   "forward sees relay's types, never the api, the emulator or config",
		from:   "internal/forward",
		forbid: []string{module + "/internal/api", module + "/internal/emulator", module + "/internal/config"},
	},
	{
		name:   "api traces through OpenTelemetry's API only: the SDK and exporters are set up by internal/tracing for cmd",
		from:   "internal/api",
		forbid: []string{"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters/"},
	},
	{
		name:   "forward traces through OpenTelemetry's API only",
		from:   "internal/forward",
		forbid: []string{"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters/"},
	},
	{
		name:        "emulator does not import api",
		from:        "internal/emulator",
		subpackages: true,
		forbid:      []string{module + "/internal/api"},
	},
	{
		name:   "config sees only relay: never the emulator, the api or the gateway",
		from:   "internal/config",
		forbid: []string{module + "/internal/emulator", module + "/internal/api", module + "/internal/gateway"},
	},
	{
		name:        "nothing imports a command",
		from:        "",
		subpackages: true,
		forbid:      []string{module + "/cmd/"},
	},
}

// TestLayering fails when a package imports (directly or through another
// package) what its layer must not see.
func TestLayering(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	for _, rule := range layerRules {
		t.Run(rule.name, func(t *testing.T) {
			t.Parallel()
			from := strings.TrimSuffix(module+"/"+rule.from, "/")
			matched := 0
			for _, p := range pkgs {
				if p.ImportPath != from && !(rule.subpackages && strings.HasPrefix(p.ImportPath, from+"/")) {
					continue
				}
				matched++
				for _, dep := range p.Deps {
					if forbidden(dep, rule.forbid, rule.allow) {
						t.Errorf("%s imports %s", p.ImportPath, dep)
					}
				}
			}
			if matched == 0 {
				t.Errorf("no package matches %q; update the rule", from)
			}
		})
	}
}

func forbidden(dep string, forbid, allow []string) bool {
	for _, a := range allow {
		if dep == a {
			return false
		}
	}
	for _, f := range forbid {
		if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) {
			return true
		}
	}
	return false
}

type listedPackage struct {
	ImportPath string
	Deps       []string
}

// listPackages runs `go list -deps -json` over the module; -deps adds the
// dependencies as packages of their own, which are filtered out here.
func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", module+"/...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/") {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no package of the module")
	}
	return pkgs
}
