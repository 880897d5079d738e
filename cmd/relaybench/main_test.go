package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestRunRejectsBadFlags checks that bad flags fail before anything is
// started, with an error that names the problem.
func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown section", []string{"-only", "e2e,nope"}, `unknown section "nope"`},
		{"bad gateway env", []string{"-gateway-env", "NOEQUALS"}, "want KEY=VALUE"},
		{"unknown flag", []string{"-frobnicate"}, "flag provided but not defined"},
		{"bad size", []string{"-sizes", "100,huge"}, `bad size "huge"`},
		{"size too large", []string{"-sizes", "2MiB"}, "outside 16 B to 1 MiB"},
		{"bad concurrency", []string{"-concurrency", "1,0"}, "not a number from 1 to 10000"},
		{"positional argument", []string{"extra"}, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("got nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) && !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("got error %q (stderr %q), want %q", err, stderr.String(), tt.want)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	for _, want := range []string{"Usage: relaybench", "-quick", "-only", "-gateway-env"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestFlagsCommand checks the command line the report names.
func TestFlagsCommand(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "go run ./cmd/relaybench"},
		{[]string{"--quick", "-window", "1s", "-only", "e2e", "-gateway-env", "GOGC=50"}, "go run ./cmd/relaybench --quick -window 1s -only e2e -gateway-env GOGC=50"},
		{[]string{"-repeat", "5", "-sizes", "100", "-concurrency", "8"}, "go run ./cmd/relaybench -repeat 5 -sizes 100 -concurrency 8"},
	} {
		f, err := parseFlags(tt.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, command, err := f.options(io.Discard)
		if err != nil || command != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.args, command, err, tt.want)
		}
	}
}
