package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Micro is one go test benchmark result.
type Micro struct {
	Package     string
	Name        string // without the -GOMAXPROCS suffix
	Iterations  int64
	NsPerOp     float64
	BytesPerOp  int64 // -1 if not reported
	AllocsPerOp int64 // -1 if not reported
	MBps        float64
}

// microPackages and microPattern select the micro-benchmarks: SAS token
// creation, request decode + validate, and the pool's send path.
var (
	microPackages = []string{"./internal/relay", "./internal/api"}
	microPattern  = "^(BenchmarkCreateToken|BenchmarkCredentialsToken|BenchmarkDecodeSendRequest|BenchmarkHandleSend|BenchmarkPoolSend|BenchmarkPoolSendSerial)$"
)

// runMicro runs the micro-benchmarks with go test from the module root and
// parses their results.
func runMicro(ctx context.Context, benchtime string) ([]Micro, string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"test", "-run", "^$", "-bench", microPattern, "-benchmem", "-benchtime", benchtime, "-count", "1"}, microPackages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	command := "go " + strings.Join(args, " ")
	if err != nil {
		return nil, command, fmt.Errorf("%s: %v\n%s", command, err, bytes.TrimSpace(out))
	}
	return parseBenchOutput(out), command, nil
}

// parseBenchOutput reads go test -bench -benchmem output: "pkg:" lines
// name the package of the benchmark lines that follow.
func parseBenchOutput(out []byte) []Micro {
	var res []Micro
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		m := Micro{Package: pkg, Name: trimProcs(f[0]), BytesPerOp: -1, AllocsPerOp: -1}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		m.Iterations = n
		for i := 2; i+1 < len(f); i += 2 {
			v, unit := f[i], f[i+1]
			switch unit {
			case "ns/op":
				m.NsPerOp, _ = strconv.ParseFloat(v, 64)
			case "B/op":
				m.BytesPerOp, _ = strconv.ParseInt(v, 10, 64)
			case "allocs/op":
				m.AllocsPerOp, _ = strconv.ParseInt(v, 10, 64)
			case "MB/s":
				m.MBps, _ = strconv.ParseFloat(v, 64)
			}
		}
		res = append(res, m)
	}
	return res
}

// trimProcs drops the "-8" GOMAXPROCS suffix of a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}
