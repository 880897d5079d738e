package api_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/relaygate/relaygate"
	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/api/apitest"
	"github.com/relaygate/relaygate/internal/relay"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestOpenAPIServedIsTheRootFile(t *testing.T) {
	t.Parallel()
	root, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, relaygate.OpenAPI()) {
		t.Fatal("embedded openapi.yaml differs from the repository root file")
	}
	e := newEnv(t, nil)
	resp := e.do("GET", "/openapi.yaml", "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(readAll(t, resp), root) {
		t.Fatalf("GET /openapi.yaml: status %d or body differs", resp.StatusCode)
	}
}

// TestRoutesMatchContract: every chi route is an operation of openapi.yaml
// and every operation (but the CORS preflights, answered by middleware) has
// a route, so neither can drift from the other.
func TestRoutesMatchContract(t *testing.T) {
	t.Parallel()
	stub := http.NotFoundHandler()
	e := newEnv(t, func(c *api.Config) { c.Console = api.ConsoleHandlers{Page: stub, Status: stub, Events: stub} })
	routes := map[string]bool{}
	err := chi.Walk(e.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for path, item := range apitest.Load(t).Paths() {
		for method := range item.Operations() {
			if method != http.MethodOptions {
				ops[method+" "+path] = true
			}
		}
	}
	for r := range routes {
		if !ops[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for o := range ops {
		if !routes[o] {
			t.Errorf("openapi.yaml operation %s has no route", o)
		}
	}
}

// TestProblemGolden pins the exact problem documents of a few errors
// (testdata/*.golden; refresh with -update).
func TestProblemGolden(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.rl.SendFn = func(context.Context, relay.Message) error { return relay.ErrOverloaded }
	cases := []struct {
		name, target, ct, body string
	}{
		{"invalid_argument", "/messages", "application/json", `{"id":"a b","extra":1}`},
		{"unsupported_media_type", "/messages", "application/xml", `<a/>`},
		{"overloaded", "/messages", "text/plain", `x`},
		{"ttl", "/token?ttl=0", "", ``},
	}
	var got bytes.Buffer
	for _, c := range cases {
		method := "POST"
		if c.ct == "" {
			method = "GET"
		}
		resp := e.do(method, c.target, c.ct, []byte(c.body), "X-Request-Id", "golden-"+c.name)
		fmt.Fprintf(&got, "%s %d Retry-After=%q\n%s\n", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), readAll(t, resp))
	}
	golden := "testdata/problems.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("problem documents changed:\n got:\n%s\nwant:\n%s", got.Bytes(), want)
	}
}
