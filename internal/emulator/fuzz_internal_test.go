package emulator

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzFilterQuery: the listener never sees an sb-hc-*= parameter, and
// everything else survives in order.
func FuzzFilterQuery(f *testing.F) {
	for _, s := range []string{"", "a=1", "sb-hc-id=1&custom=value", "sb-hc-whatever=", "?sb-hc-undefined", "SB-HC-Token=x&b", "sb%2Dhc%2Dtoken=x", "%zz=1&&a", "a=1&sb-hc-action=connect&b=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := filterQuery(raw)
		for part := range strings.SplitSeq(out, "&") {
			k, _, hasEq := strings.Cut(part, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			if hasEq && strings.HasPrefix(strings.ToLower(k), "sb-hc-") {
				t.Fatalf("filterQuery(%q) = %q keeps %q", raw, out, part)
			}
		}
		if len(out) > len(raw) {
			t.Fatalf("filterQuery grew its input")
		}
	})
}

// FuzzResolve: any request path resolves to an entity or a clean error,
// never a panic, and the suffix is a tail of the path.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"hc1", "HC1/a/b", "team/hc1/x", "%2Fx", "a%zz", "", "/", "//", "team", "a/../b", "%24hc/x"} {
		f.Add(s)
	}
	s, err := New(Config{AutoCreate: true, Entities: []Entity{{Name: "hc1"}, {Name: "team/hc1"}}}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		res, we := s.resolve(p)
		if we != nil {
			if we.code != 400 && we.code != 404 {
				t.Fatalf("resolve(%q) = %d", p, we.code)
			}
			return
		}
		if res.name == "" || !strings.HasSuffix(p, strings.TrimPrefix(res.suffix, "/")) {
			t.Fatalf("resolve(%q) = %+v", p, res)
		}
	})
}

// FuzzRejectParams: reject parameters yield a code in range or a 400.
func FuzzRejectParams(f *testing.F) {
	for _, s := range []string{"sb-hc-statusCode=404&sb-hc-statusDescription=x", "statusCode=abc", "sb-hc-statusCode=99999999999999999999", "statusCode=101", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		code, _, isReject, we := rejectParams(q)
		if we == nil && isReject && (code < 300 || code > 599) {
			t.Fatalf("rejectParams(%q) = %d", raw, code)
		}
	})
}

// FuzzWriteRaw: whatever a listener puts in statusDescription and
// responseHeaders, the sender gets one well-formed response with the
// listener's status code.
func FuzzWriteRaw(f *testing.F) {
	f.Add(200, "OK", "X-A", "1", []byte("body"))
	f.Add(404, "Not\r\nFound", "Bad Name", "v\r\nInjected: 1", []byte{})
	f.Add(599, strings.Repeat("x", 3000), "X-B", "\x00", []byte("z"))
	f.Add(204, "", "Content-Length", "5", []byte("ignored"))
	f.Fuzz(func(t *testing.T, code int, reason, hk, hv string, body []byte) {
		if code < 200 || code > 999 {
			return // rejected before writeRaw
		}
		h := http.Header{}
		if validHeaderName(hk) && validHeaderValue(hv) && !hopHeaders[http.CanonicalHeaderKey(hk)] {
			h.Set(hk, hv)
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := writeRaw(bw, rawResponse{code: code, reason: reason, header: h, body: body}); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf.Bytes())), nil)
		if err != nil {
			t.Fatalf("unparsable response %q: %v", buf.Bytes(), err)
		}
		if resp.StatusCode != code {
			t.Fatalf("status %d, want %d", resp.StatusCode, code)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if bodyAllowed(code) && !bytes.Equal(got, body) {
			t.Fatalf("body %q, want %q", got, body)
		}
		if resp.Header.Get("Injected") != "" {
			t.Fatal("header injection")
		}
	})
}
