package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestRunHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GATEWAY_CONNECTION_STRING", "GATEWAY_ADDR", "GATEWAY_API_KEYS", "GATEWAY_SHUTDOWN_TIMEOUT", "local mode"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s", want)
		}
	}
}

func TestRunRejectsInvalidConfig(t *testing.T) {
	testlog.Setenv(t, map[string]string{
		"GATEWAY_ADDR": "0.0.0.0:0", "GATEWAY_POOL_SIZE": "0", "GATEWAY_KEY": "c2VjcmV0LXNob3VsZC1ub3QtbGVhaw==",
	}, "GATEWAY")
	var out bytes.Buffer
	err := run(context.Background(), nil, &out)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"GATEWAY_ADDR", "GATEWAY_POOL_SIZE", "GATEWAY_NAMESPACE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(out.String(), "c2VjcmV0") {
		t.Error("the key leaked")
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	testlog.Setenv(t, map[string]string{
		"GATEWAY_ADDR": "127.0.0.1:0", "GATEWAY_SHUTDOWN_TIMEOUT": "5s",
		"GATEWAY_ADMIN_ADDR":   "127.0.0.1:0", // not the default 9090: other processes may hold it
		"GATEWAY_MEMORY_LIMIT": "50331648",
	}, "GATEWAY")
	t.Setenv("GOMEMLIMIT", "") // the explicit GATEWAY_MEMORY_LIMIT must win
	ctx, cancel := context.WithCancel(context.Background())
	var out testlog.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, &out) }()
	testlog.WaitFor(t, "the banner", func() bool { return strings.Contains(out.String(), "LOCAL MODE") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), `msg=stopped`) {
		t.Errorf("no clean stop in the log:\n%s", out.String())
	}
	for _, want := range []string{`msg="memory limit" limit_bytes=50331648 limit="48.0 MiB" source=GATEWAY_MEMORY_LIMIT`, `msg=tracing otlp_export=false`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, out.String())
		}
	}
}
