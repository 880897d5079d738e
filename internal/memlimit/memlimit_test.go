package memlimit

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// fakeCgroup writes files (relative path → content) under a temporary
// directory standing for /sys/fs/cgroup and returns it.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroupLimit(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  int64
		err   string
	}{
		{"no cgroup files", nil, 0, ""},
		{"v2 limit", map[string]string{"memory.max": "268435456\n"}, 256 << 20, ""},
		{"v2 unlimited", map[string]string{"memory.max": "max\n"}, 0, ""},
		{"v1 limit", map[string]string{"memory/memory.limit_in_bytes": "134217728\n"}, 128 << 20, ""},
		{"v1 unlimited", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, ""},
		{"v2 wins over v1", map[string]string{"memory.max": "1048576", "memory/memory.limit_in_bytes": "2097152"}, 1 << 20, ""},
		{"garbage", map[string]string{"memory.max": "lots"}, 0, `memory.max holds "lots"`},
		{"negative", map[string]string{"memory.max": "-1"}, 0, "want a positive number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CgroupLimit(fakeCgroup(t, tt.files))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CgroupLimit = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestDecidePrecedence: GOMEMLIMIT > explicit GATEWAY_MEMORY_LIMIT >
// cgroup fraction > default, and the default never hides the cgroup.
func TestDecidePrecedence(t *testing.T) {
	const def = 48 << 20
	limited := map[string]string{"memory.max": "1073741824"} // 1 GiB
	for _, tt := range []struct {
		name   string
		in     Input
		files  map[string]string
		want   int64
		source Source
	}{
		{"default without a cgroup limit", Input{Configured: def}, nil, def, SourceDefault},
		{"cgroup over the default", Input{Configured: def}, limited, 966367641, SourceCgroup},
		{"explicit over the cgroup", Input{Configured: 64 << 20, ConfiguredSet: true}, limited, 64 << 20, SourceConfig},
		{"explicit 0 disables", Input{Configured: 0, ConfiguredSet: true}, limited, 0, SourceConfig},
		{"unlimited cgroup: default", Input{Configured: def}, map[string]string{"memory.max": "max"}, def, SourceDefault},
		{"explicit wins over a broken cgroup file", Input{Configured: 1 << 20, ConfiguredSet: true}, map[string]string{"memory.max": "?"}, 1 << 20, SourceConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Default = def
			in.CgroupRoot = fakeCgroup(t, tt.files)
			d, err := Decide(in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Limit != tt.want || d.Source != tt.source {
				t.Errorf("Decide = %+v, want limit %d from %s", d, tt.want, tt.source)
			}
		})
	}

	if _, err := Decide(Input{Default: def, CgroupRoot: fakeCgroup(t, map[string]string{"memory.max": "?"})}); err == nil {
		t.Error("a cgroup file that does not parse: no error")
	}
}

// TestDecideGOMEMLIMIT: an explicit GOMEMLIMIT (already applied by the
// runtime) wins and is reported as the runtime has it.
func TestDecideGOMEMLIMIT(t *testing.T) {
	prev := debug.SetMemoryLimit(96 << 20) // what the runtime would have done for GOMEMLIMIT=96MiB
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	d, err := Decide(Input{GOMEMLIMIT: "96MiB", Configured: 1 << 20, ConfiguredSet: true,
		CgroupRoot: fakeCgroup(t, map[string]string{"memory.max": "1073741824"})})
	if err != nil {
		t.Fatal(err)
	}
	if d.Limit != 96<<20 || d.Source != SourceGOMEMLIMIT || d.Cgroup != 1<<30 {
		t.Errorf("Decide = %+v", d)
	}
}

// TestApply sets the runtime's limit and logs it with its source; Apply
// leaves a GOMEMLIMIT decision to the runtime.
func TestApply(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	Apply(Decision{Limit: 900 << 20, Source: SourceCgroup, Cgroup: 1000 << 20}, log)
	if got := debug.SetMemoryLimit(-1); got != 900<<20 {
		t.Errorf("runtime limit %d, want %d", got, 900<<20)
	}
	for _, want := range []string{`msg="memory limit"`, "limit_bytes=943718400", `limit="900.0 MiB"`, "source=cgroup", "cgroup_limit_bytes=1048576000"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s: %s", want, logs.String())
		}
	}

	Apply(Decision{Limit: 0, Source: SourceConfig}, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GATEWAY_MEMORY_LIMIT=0: runtime limit %d, want none", got)
	}
	debug.SetMemoryLimit(123 << 20)
	Apply(Decision{Limit: 123 << 20, Source: SourceGOMEMLIMIT}, log)
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("GOMEMLIMIT: runtime limit changed to %d", got)
	}
}
