// Package apitest checks HTTP exchanges against the gateway's OpenAPI
// contract (openapi.yaml, embedded in package relaygate) with kin-openapi,
// so tests of every layer validate every response they see.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/relaygate/relaygate"
)

// Contract is the loaded OpenAPI document and its router. It is safe for
// concurrent use.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	loadOnce sync.Once
	loaded   *Contract
	loadErr  error
)

// ndjsonDecoder hands an application/x-ndjson body (POST /messages:batch)
// to its string schema; the gateway checks each line itself.
func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	return string(b), err
}

// Load parses and validates openapi.yaml once per process.
func Load(tb testing.TB) *Contract {
	tb.Helper()
	loadOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder)
		l := openapi3.NewLoader()
		doc, err := l.LoadFromData(relaygate.OpenAPI())
		if err != nil {
			loadErr = err
			return
		}
		if err := doc.Validate(l.Context); err != nil {
			loadErr = err
			return
		}
		doc.Servers = nil // match any host: tests listen on 127.0.0.1:0
		r, err := gorillamux.NewRouter(doc)
		if err != nil {
			loadErr = err
			return
		}
		loaded = &Contract{doc: doc, router: r}
	})
	if loadErr != nil {
		tb.Fatalf("openapi.yaml: %v", loadErr)
	}
	return loaded
}

// Check validates one exchange: the response must match the operation's
// documented status, headers and body; a request that the contract rejects
// must have been answered with a 4xx. Requests to paths the contract does
// not have must get a 404 or 405 problem document.
func (c *Contract) Check(tb testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	tb.Helper()
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			tb.Errorf("%s %s: no operation in openapi.yaml, but status %d", req.Method, req.URL.Path, status)
		}
		c.checkProblem(tb, req, status, header, respBody)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		if status < 400 || status > 499 {
			tb.Errorf("%s %s: the contract rejects the request (%v), but the gateway answered %d", req.Method, req.URL, short(err), status)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		tb.Errorf("%s %s → %d: response does not match openapi.yaml: %v\nbody: %.500s", req.Method, req.URL.Path, status, err, respBody)
	}
	if status >= 400 {
		c.checkProblem(tb, req, status, header, respBody)
	}
}

// checkProblem validates an error body against the Problem schema and
// checks the fields that the schema cannot tie to the response.
func (c *Contract) checkProblem(tb testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	tb.Helper()
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("%s %s → %d: Content-Type %q, want application/problem+json", req.Method, req.URL.Path, status, ct)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		tb.Errorf("%s %s → %d: problem is not JSON: %v", req.Method, req.URL.Path, status, err)
		return
	}
	if err := c.doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		tb.Errorf("%s %s → %d: problem does not match the Problem schema: %v", req.Method, req.URL.Path, status, err)
	}
	m, _ := v.(map[string]any)
	if got, _ := m["status"].(float64); int(got) != status {
		tb.Errorf("problem status %v, HTTP status %d", m["status"], status)
	}
	if got, want := m["request_id"], header.Get("X-Request-Id"); got != want {
		tb.Errorf("problem request_id %v, X-Request-Id header %q", got, want)
	}
	if status == http.StatusServiceUnavailable && header.Get("Retry-After") == "" {
		tb.Errorf("503 without Retry-After")
	}
}

func short(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	return s
}

// Serve runs req through h with an httptest.ResponseRecorder, checks the
// exchange and returns the response (its Body is readable again).
func (c *Contract) Serve(tb testing.TB, h http.Handler, req *http.Request) *http.Response {
	tb.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	rb, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	c.Check(tb, req, body, resp.StatusCode, resp.Header, rb)
	return resp
}

// Client returns an HTTP client whose every exchange is checked against
// the contract (safe for concurrent use; failures are reported on tb).
func (c *Contract) Client(tb testing.TB) *http.Client {
	return &http.Client{Transport: &transport{c: c, tb: tb, base: http.DefaultTransport}}
}

type transport struct {
	c    *Contract
	tb   testing.TB
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	t.c.Check(t.tb, req, body, resp.StatusCode, resp.Header, rb)
	return resp, nil
}

// Paths returns the contract's paths and their operations.
func (c *Contract) Paths() map[string]*openapi3.PathItem { return c.doc.Paths.Map() }
