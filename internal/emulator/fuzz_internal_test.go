package emulator

import (
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
