package api

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// FuzzHostAndOrigin feeds arbitrary Host and Origin header values (network
// bytes) to the Host policy and the Origin check: they must not panic, and
// a host name the policy allows must stay allowed with a trailing dot.
func FuzzHostAndOrigin(f *testing.F) {
	for _, seed := range [][2]string{
		{"localhost:8080", "http://localhost:8080"}, {"[::1]:80", "null"}, {"attacker.example", "https://evil.example"},
		{"GW.example.:443", "https://gw.example"}, {"", ""}, {"[", "http://[::1"}, {"a:b:c", "http://a:b:c"},
		{"10.0.0.1:8080", "http://10.0.0.1:8080/path"}, {"x.corp.example", "ftp://x.corp.example"},
	} {
		f.Add(seed[0], seed[1])
	}
	p := newHostPolicy("127.0.0.1:8080", []string{"gw.example", "gw2.example:8443", "*.corp.example"})
	s := New(Config{CORSOrigins: []string{"https://app.example"}}, nil, nil, nil, nil)
	f.Fuzz(func(t *testing.T, host, origin string) {
		if p.allows(host) {
			host, port := splitHost(host)
			if _, err := netip.ParseAddr(host); err != nil && port == "" && host != "" && !p.allows(host+".") {
				t.Errorf("%q allowed but %q not", host, host+".")
			}
		}
		r := httptest.NewRequest("POST", "/messages", nil)
		r.Host = host
		s.originAllowed(origin, r)
	})
}
