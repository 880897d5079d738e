package api

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Host and Origin checks (issue 12, item 4). Without API keys the gateway
// trusts whoever can reach it, which on a workstation includes every web
// page the user opens: a page can POST a "simple" text/plain request to
// http://127.0.0.1:8080 without a preflight, and a page on a rebound DNS
// name (attacker.example → 127.0.0.1) can even read the answers. Two checks
// close that:
//
//   - Host: the request must name this gateway: localhost, 127.0.0.1 or
//     [::1], the host of the bound address, any IP literal when the gateway
//     binds every interface (a rebinding attack always sends a DNS name), or
//     a name in Config.AllowedHosts. Anything else is 421 Misdirected
//     Request, code host_not_allowed: the request reached a server that
//     does not serve that authority (RFC 9110 §15.5.20). /healthz and
//     /readyz accept any Host, since orchestrators probe pod IPs.
//   - Origin: a state-changing request (any method but GET, HEAD and
//     OPTIONS) and GET /token are refused with 403 origin_not_allowed when
//     they carry an Origin that is neither the gateway itself (same scheme
//     host and port as the Host header) nor in Config.CORSOrigins.
//
// Both run before authentication, so they apply with API keys too.

// hostPolicy decides which Host header values name this gateway. It is
// immutable after newHostPolicy.
type hostPolicy struct {
	any       bool            // "*" in AllowedHosts: no Host check
	anyIP     bool            // bound to every interface: any IP literal
	names     map[string]bool // exact host names (lower case, no port)
	hostPorts map[string]bool // exact host:port entries
	suffixes  []string        // ".example.com" from "*.example.com"
}

// newHostPolicy builds the policy for a gateway bound to listenAddr (may
// be empty: only the defaults and allowed apply).
func newHostPolicy(listenAddr string, allowed []string) *hostPolicy {
	p := &hostPolicy{
		names:     map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true},
		hostPorts: map[string]bool{},
	}
	if listenAddr != "" {
		host, _, err := net.SplitHostPort(listenAddr)
		if err != nil {
			host = listenAddr
		}
		host = normalizeHost(host)
		if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
			p.anyIP = true
		} else {
			p.names[host] = true
		}
	}
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSpace(a))
		switch {
		case a == "":
		case a == "*":
			p.any = true
		case strings.HasPrefix(a, "*."):
			p.suffixes = append(p.suffixes, a[1:])
		default:
			if h, port, err := net.SplitHostPort(a); err == nil {
				p.hostPorts[net.JoinHostPort(normalizeHost(h), port)] = true
			} else {
				p.names[normalizeHost(a)] = true
			}
		}
	}
	return p
}

// normalizeHost lower-cases h and strips IPv6 brackets and a trailing dot.
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// splitHost splits a Host header into a normalized host name and a port
// ("" if none).
func splitHost(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return normalizeHost(h), p
	}
	return normalizeHost(hostport), ""
}

// allows reports whether the Host header value hostport names the gateway.
func (p *hostPolicy) allows(hostport string) bool {
	if p.any {
		return true
	}
	host, port := splitHost(hostport)
	if host == "" {
		return false
	}
	if p.names[host] || port != "" && p.hostPorts[net.JoinHostPort(host, port)] {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.anyIP || ip.IsLoopback()
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// probePaths accept any Host: orchestrators probe them by pod IP.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true}

// checkHostOrigin refuses requests whose Host does not name the gateway
// (421) and cross-site state-changing or token requests (403). Nothing
// after it runs for a refused request.
func (s *Server) checkHostOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probePaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		if !s.hosts.allows(r.Host) {
			s.writeProblem(w, r, newProblem(codeHostNotAllowed,
				"the Host header does not name this gateway; add the name to GATEWAY_ALLOWED_HOSTS to serve it"))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && needsOriginCheck(r) && !s.originAllowed(origin, r) {
			s.writeProblem(w, r, newProblem(codeOriginNotAllowed,
				"requests from this browser origin are not allowed; add it to GATEWAY_CORS_ORIGINS to allow it"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// needsOriginCheck reports whether r changes state or mints a token: every
// method but GET, HEAD and OPTIONS, and GET /token.
func needsOriginCheck(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return r.URL.Path == "/token"
	case http.MethodOptions:
		return false
	}
	return true
}

// originAllowed reports whether origin may call the API: it is in the CORS
// list (or the list has "*"), or it is the gateway itself (an http or https
// origin whose host and port are those of the Host header; a Host without
// a port matches on the name alone, as behind a TLS-terminating proxy).
func (s *Server) originAllowed(origin string, r *http.Request) bool {
	if s.anyOrigin || s.origins[origin] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.User != nil {
		return false // includes the opaque origin "null"
	}
	oHost, oPort := normalizeHost(u.Hostname()), u.Port()
	host, port := splitHost(r.Host)
	if oHost != host {
		return false
	}
	if port == "" {
		return true
	}
	if oPort == "" {
		oPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return oPort == port
}
