// Package memlimit chooses the Go runtime's soft memory limit for the
// gateway: an explicit GOMEMLIMIT wins, then an explicit
// GATEWAY_MEMORY_LIMIT, then a fraction of the container's cgroup memory
// limit, then a default. The package reads the cgroup files under a root
// it is given (tests use a fake one) and never the environment.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Source says where the effective limit came from.
type Source string

// Sources, in order of precedence.
const (
	SourceGOMEMLIMIT Source = "GOMEMLIMIT"           // the runtime applied it at start
	SourceConfig     Source = "GATEWAY_MEMORY_LIMIT" // set explicitly (0 disables the limit)
	SourceCgroup     Source = "cgroup"               // CgroupFraction of the container's limit
	SourceDefault    Source = "default"              // no container limit found
)

// CgroupFraction is the share of the cgroup memory limit used as the soft
// limit: the rest is headroom for what the runtime's limit does not count
// but the cgroup does (the kernel's socket buffers and page cache charged
// to the container). automemlimit uses the same 0.9.
const CgroupFraction = 0.9

// DefaultCgroupRoot is where cgroup v2 (and the v1 "memory" controller
// under it) is mounted in a container.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// unlimitedV1 is the smallest value cgroup v1 reports for "no limit"
// (PAGE_COUNTER_MAX rounded to the page size, about 2^63).
const unlimitedV1 = 1 << 62

// Input is what the decision depends on.
type Input struct {
	// GOMEMLIMIT is the value of the variable ("" when unset).
	GOMEMLIMIT string
	// Configured is GATEWAY_MEMORY_LIMIT in bytes; ConfiguredSet reports
	// whether it was set explicitly rather than left at its default.
	Configured    int64
	ConfiguredSet bool
	// Default applies when nothing else does (0: no limit).
	Default int64
	// CgroupRoot is where the cgroup filesystem is mounted; "" means
	// DefaultCgroupRoot.
	CgroupRoot string
}

// Decision is the limit to apply and where it came from.
type Decision struct {
	// Limit in bytes; 0 means no limit (math.MaxInt64 for the runtime).
	Limit  int64
	Source Source
	// Cgroup is the container's limit in bytes, 0 when none was found.
	Cgroup int64
}

// Decide returns the limit by precedence: GOMEMLIMIT > GATEWAY_MEMORY_LIMIT
// set explicitly > CgroupFraction of the cgroup limit > Default. A cgroup
// file that exists but does not parse is an error (naming the file); a
// missing one means no container limit.
func Decide(in Input) (Decision, error) {
	root := in.CgroupRoot
	if root == "" {
		root = DefaultCgroupRoot
	}
	cg, err := CgroupLimit(root)
	d := Decision{Cgroup: cg}
	switch {
	case in.GOMEMLIMIT != "":
		d.Source = SourceGOMEMLIMIT
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			d.Limit = l
		}
		return d, nil // the runtime parsed it; a cgroup error does not matter
	case in.ConfiguredSet:
		d.Limit, d.Source = in.Configured, SourceConfig
		return d, nil
	case err != nil:
		return d, err
	case cg > 0:
		d.Limit, d.Source = int64(float64(cg)*CgroupFraction), SourceCgroup
	default:
		d.Limit, d.Source = in.Default, SourceDefault
	}
	return d, nil
}

// Apply sets the runtime's soft limit from d (GOMEMLIMIT's is already
// set; a zero Limit removes the limit) and logs the effective limit and
// its source.
func Apply(d Decision, log *slog.Logger) {
	if d.Source != SourceGOMEMLIMIT {
		limit := d.Limit
		if limit <= 0 {
			limit = math.MaxInt64
		}
		debug.SetMemoryLimit(limit)
	}
	attrs := []any{"limit_bytes", d.Limit, "limit", human(d.Limit), "source", string(d.Source)}
	if d.Cgroup > 0 {
		attrs = append(attrs, "cgroup_limit_bytes", d.Cgroup)
	}
	log.Info("memory limit", attrs...)
}

// CgroupLimit returns the memory limit of the cgroup mounted at root: v2's
// memory.max, else v1's memory/memory.limit_in_bytes. It returns 0 when
// neither file exists or the limit is "max" (v2) or the v1 "unlimited"
// value.
func CgroupLimit(root string) (int64, error) {
	for _, name := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		path := filepath.Join(root, name)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("memory limit: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("memory limit: %s holds %q, want a positive number of bytes or max", path, truncate(s))
		}
		if n >= unlimitedV1 {
			return 0, nil
		}
		return n, nil
	}
	return 0, nil
}

// human formats n bytes in MiB for the log ("off" for no limit).
func human(n int64) string {
	if n <= 0 {
		return "off"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
