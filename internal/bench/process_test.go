package bench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// utime 250, stime 50 ticks; the command name holds ") (" to mislead
	// a naive split.
	stat := "4242 (gate) (way) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 gateway S 1", "4242 (g) S 1 2 3", "4242 (g) S 1 2 3 4 5 6 7 8 9 10 x 50 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

// TestBareServerAndLoadChild runs the two child-process modes in this
// process: the bare server, and the load generator against it, whose
// protocol lines and result readLoadOutput must read back.
func TestBareServerAndLoadChild(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- ServeBare(ctx, "127.0.0.1:0", pw) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		t.Fatalf("first line %q", line)
	}

	out, in := io.Pipe()
	spec := LoadSpec{URL: "http://" + addr + "/messages", Body: string(jsonBody(100)), Conc: 4,
		Warmup: 10 * time.Millisecond, Window: 50 * time.Millisecond, Want: http.StatusAccepted}
	go func() { in.CloseWithError(RunLoad(ctx, spec, in)) }()
	var marks []string
	res, err := readLoadOutput(out, func(l string) { marks = append(marks, l) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(marks, ",") != lineMeasure+","+lineStop {
		t.Errorf("protocol lines %q", marks)
	}
	if res.Requests == 0 || res.Messages < res.Requests || len(res.Errors) > 0 || res.P99 == 0 {
		t.Errorf("result %+v", res)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeBare: %v", err)
	}
}

func TestBatchBody(t *testing.T) {
	t.Parallel()
	b := string(batchBody(3, 100))
	if !strings.HasPrefix(b, `{"messages":[{"message":"`) || strings.Count(b, `{"message":`) != 3 || !strings.HasSuffix(b, `"}]}`) {
		t.Errorf("batch body %q", b)
	}
}
