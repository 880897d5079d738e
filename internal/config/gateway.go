package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// GatewayPrefix is the environment prefix of cmd/gateway.
const GatewayPrefix = "GATEWAY"

// Values of GATEWAY_MODE.
const (
	GatewayModePool    = "pool"
	GatewayModeRequest = "request"
)

// Gateway is cmd/gateway's configuration, read from GATEWAY_* variables.
// At most one credential source of Relay is used: ConnectionString,
// ConfigFile, or the explicit fields (Namespace, EntityPath, KeyName, Key).
// With none the gateway runs in local mode (in-process emulator and
// listener).
type Gateway struct {
	Relay // GATEWAY_CONNECTION_STRING, …; none: local mode

	Addr              string   `split_words:"true" default:"127.0.0.1:8080" desc:"HTTP listen address host:port. A non-loopback address needs GATEWAY_API_KEYS or GATEWAY_ALLOW_INSECURE_BIND=true"`
	AllowInsecureBind bool     `split_words:"true" default:"false" desc:"allow a non-loopback GATEWAY_ADDR without API keys (anyone who can reach it can send and mint tokens)"`
	APIKeys           []string `split_words:"true" desc:"comma-separated API keys (each at least 16 characters); when set, POST /messages and GET /token need Authorization: Bearer KEY or X-API-Key: KEY"`
	CORSOrigins       []string `split_words:"true" desc:"comma-separated browser origins allowed to call the API (https://app.example), or * for any; empty: no CORS headers. Cross-site POSTs and GET /token from other origins get 403"`
	AllowedHosts      []string `split_words:"true" desc:"comma-separated further Host header values the API answers (gw.example, gw.example:8443, *.example.com, or * for any); always allowed: localhost, 127.0.0.1, [::1] and GATEWAY_ADDR's host (any IP when it binds every interface). Others get 421; /healthz and /readyz accept any Host"`
	AdminAddr         string   `split_words:"true" default:"127.0.0.1:9090" desc:"admin listen address host:port for GET /metrics (and /debug/pprof/ with GATEWAY_PPROF); empty: off. /healthz and /readyz stay on GATEWAY_ADDR"`
	Pprof             bool     `split_words:"true" default:"false" desc:"serve /debug/pprof/ on GATEWAY_ADMIN_ADDR"`
	MaxConns          int      `split_words:"true" default:"0" validate:"min=0" desc:"most HTTP connections open at once on GATEWAY_ADDR; at the cap the longest-idle keep-alive connection is closed to admit a new one; 0: 80% of the open-file limit minus 64"`

	Mode           string `split_words:"true" default:"pool" validate:"oneof=pool request" desc:"pool: POST /messages is sent over pooled sender WebSockets (?delivery=request uses HTTP request mode). request: for listeners that serve only HTTP request mode (Microsoft's hyco-https, .NET RequestHandler-only): no sender WebSocket is dialled, every POST /messages is delivered in request mode and answered with the listener's response, ?delivery=send is refused with 400, and /readyz probes the listener"`
	TokenPlacement string `split_words:"true" default:"header" validate:"oneof=header query auto" desc:"where the SAS token goes on every relay connection and request: header (ServiceBusAuthorization), query (sb-hc-token, for relays that accept only that) or auto (header, then the query after a 401, then the query only)"`

	PoolSize         int           `split_words:"true" default:"4" validate:"min=1,max=64" desc:"number of pooled sender WebSockets kept open to the relay"`
	QueueSize        int           `split_words:"true" default:"64" validate:"min=1,max=65536" desc:"messages queued per pooled connection before POST /messages answers 503 overloaded"`
	MaxBodyBytes     int64         `split_words:"true" default:"1048576" validate:"min=1,max=67108864" desc:"largest request body (and listener reply) in bytes; larger bodies get 413"`
	MaxBatch         int           `split_words:"true" default:"1000" validate:"min=1,max=100000" desc:"most messages in one POST /messages:batch (within GATEWAY_MAX_BODY_BYTES)"`
	SendTimeout      time.Duration `split_words:"true" default:"10s" validate:"min=100ms" desc:"how long POST /messages may wait for a healthy connection and the write (then 503/504)"`
	DeliveryTimeout  time.Duration `split_words:"true" default:"60s" validate:"min=100ms" desc:"how long POST /messages?delivery=request waits for the listener's answer (Azure's own limit is 60s)"`
	WriteTimeout     time.Duration `split_words:"true" default:"2s" validate:"min=100ms" desc:"stall threshold of a pooled connection: a write blocked this long, unsent bytes not draining this long, or a ping unanswered this long stalls it (out of rotation, replaced, kept open to drain)"`
	StallCloseAfter  time.Duration `split_words:"true" default:"60s" validate:"min=100ms" desc:"how long a stalled pooled connection is kept open for its listener to resume before it is closed (what it had not delivered is counted in relaygate_pool_frames_maybe_lost_total)"`
	MaxUnsentBytes   int64         `split_words:"true" default:"262144" validate:"min=4096,max=67108864" desc:"most bytes one pooled connection holds written but not acknowledged by the relay (Linux): the worst-case loss per connection when a listener dies"`
	MaxQueuedBytes   int64         `split_words:"true" default:"1048576" validate:"min=1024,max=1073741824" desc:"most bytes waiting in one pooled connection's queue before POST /messages answers 503 overloaded"`
	MaxQueueWait     time.Duration `split_words:"true" default:"1s" validate:"min=0" desc:"longest a message may wait in a pooled connection's queue before it is written; then POST /messages answers 503 overloaded (never written: safe to retry), so a connection whose writes slowed down cannot hold accepted requests for long; 0 disables"`
	MaxConnAge       time.Duration `split_words:"true" default:"20s" validate:"min=0" desc:"pooled connections are replaced (make-before-break) after this age, jittered ±20%, so listeners that (re)connect get traffic; 0 disables"`
	MaxInflightBytes int64         `split_words:"true" default:"33554432" validate:"min=0" desc:"most request-body bytes (by Content-Length, else GATEWAY_MAX_BODY_BYTES) POST /messages handles at once; above it requests get 503 overloaded with Retry-After at once; 0 disables"`
	MaxWait          time.Duration `split_words:"true" default:"500ms" validate:"min=0" desc:"longest expected wait of a new POST /messages: the bytes of the sends in progress divided by the rate the gateway has recently relayed at; above it requests get 503 overloaded with Retry-After before their body is read, so accepted requests keep a bounded latency when the relay or listener slows down; 0 disables"`
	DialTimeout      time.Duration `split_words:"true" default:"10s" validate:"min=100ms" desc:"deadline of one relay dial (WebSocket handshake including the listener's accept)"`
	PingInterval     time.Duration `split_words:"true" default:"30s" validate:"min=100ms" desc:"WebSocket ping interval on pooled connections (dead ones are replaced)"`
	TokenTTL         time.Duration `split_words:"true" default:"1h" validate:"min=1m" desc:"lifetime of the SAS tokens the pool mints; connections are replaced before their token expires"`
	TokenMaxTTL      time.Duration `split_words:"true" default:"24h" validate:"min=1m" desc:"largest ttl GET /token accepts (its default is 1h, or this cap if smaller)"`
	RetryAfter       time.Duration `split_words:"true" default:"1s" validate:"min=1s" desc:"Retry-After sent with every 503"`
	// MemoryLimit is a soft limit, not a cap: near it the GC runs more often
	// instead of letting the heap double (relaybench: 1,000 clients peak at
	// ~80 MiB RSS without it, ~55 MiB with 48 MiB).
	MemoryLimit     int64         `split_words:"true" default:"50331648" validate:"min=0" desc:"soft memory limit of the Go runtime in bytes (debug.SetMemoryLimit); 0 disables it. Unset: 90% of the container's cgroup memory limit if there is one, else this default. GOMEMLIMIT, when set, wins"`
	DrainDelay      time.Duration `split_words:"true" default:"5s" validate:"min=0" desc:"on SIGINT/SIGTERM, /readyz answers 503 at once but requests are served normally this long (for load balancers to stop routing) before the listening socket closes"`
	ShutdownTimeout time.Duration `split_words:"true" default:"15s" validate:"min=100ms" desc:"grace period after GATEWAY_DRAIN_DELAY for in-flight requests and closing pooled connections"`

	EnvelopeTraceparent bool `split_words:"true" default:"false" desc:"add the W3C traceparent of the request's trace as a \"traceparent\" member of the {\"id\",\"message\"} envelope of JSON messages sent over WebSockets (cmd/listener continues the trace from it); off, listeners see the envelope unchanged. Traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set"`

	LogLevel  string `split_words:"true" default:"info" validate:"oneof=debug info warn error" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat string `split_words:"true" default:"text" validate:"oneof=text json" desc:"log format on stderr: text or json"`

	// memoryLimitSet reports whether GATEWAY_MEMORY_LIMIT was set rather
	// than defaulted (see MemoryLimitSet).
	memoryLimitSet bool
}

// MemoryLimitSet reports whether GATEWAY_MEMORY_LIMIT was set explicitly:
// only then does MemoryLimit override the container's cgroup limit.
func (c *Gateway) MemoryLimitSet() bool { return c.memoryLimitSet }

// minAPIKeyLen is the shortest accepted API key.
const minAPIKeyLen = 16

// LoadGateway reads GATEWAY_* variables and parses args (gateway has no
// flags but -h, which prints the usage on out and returns flag.ErrHelp).
// It rejects unknown variables and validates the result, listing every
// problem by variable name and never a secret's value.
func LoadGateway(args []string, out io.Writer) (Gateway, error) {
	var c Gateway
	err := load(GatewayPrefix, &c, command{name: "gateway", head: gatewayUsageHead}, args, out)
	_, c.memoryLimitSet = os.LookupEnv(GatewayPrefix + "_MEMORY_LIMIT")
	if _, set := os.LookupEnv(GatewayPrefix + "_DRAIN_DELAY"); !set && c.Local() {
		// Local mode has no load balancer to wait for: Ctrl-C stops at once.
		c.DrainDelay = 0
	}
	return c, err
}

const gatewayUsageHead = `Usage: gateway

relaygate HTTP gateway to an Azure Relay Hybrid Connection. Configured by environment variables;
with no relay credentials it runs in local mode (in-process emulator and listener).
`

// GatewayDefaults returns the configuration an empty environment gives
// (local mode on 127.0.0.1:8080), without reading the environment: the
// starting point of an in-process gateway such as the benchmark's.
func GatewayDefaults() Gateway {
	var c Gateway
	setDefaults(&c)
	c.DrainDelay = 0 // local mode, as LoadGateway without GATEWAY_DRAIN_DELAY
	return c
}

// Validate checks the cross-field rules: at most one credential source,
// complete explicit credentials, a bind address that is loopback unless
// protected by API keys (or explicitly allowed), and key lengths.
func (c *Gateway) Validate() error {
	var problems []string
	if err := c.validateSource(); err != nil {
		problems = append(problems, err.Error())
	} else if !c.Local() {
		if _, err := c.Credentials(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	host, _, err := net.SplitHostPort(c.Addr)
	switch {
	case err != nil:
		problems = append(problems, "GATEWAY_ADDR: must be host:port")
	case !IsLoopback(host) && len(c.APIKeys) == 0 && !c.AllowInsecureBind:
		problems = append(problems, "GATEWAY_ADDR: a non-loopback address needs GATEWAY_API_KEYS (or GATEWAY_ALLOW_INSECURE_BIND=true)")
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			problems = append(problems, "GATEWAY_ADMIN_ADDR: must be host:port (or empty for no admin listener)")
		}
	} else if c.Pprof {
		problems = append(problems, "GATEWAY_PPROF: needs GATEWAY_ADMIN_ADDR")
	}
	for _, h := range c.AllowedHosts {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, "/ @") {
			problems = append(problems, fmt.Sprintf("GATEWAY_ALLOWED_HOSTS: %q is not a host name, host:port, *.domain or *", h))
		}
	}
	for i, k := range c.APIKeys {
		if len(strings.TrimSpace(k)) < minAPIKeyLen {
			problems = append(problems, fmt.Sprintf("GATEWAY_API_KEYS: key %d is shorter than %d characters", i+1, minAPIKeyLen))
		}
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			problems = append(problems, fmt.Sprintf("GATEWAY_CORS_ORIGINS: %q is not an origin (scheme://host[:port])", o))
		}
	}
	if _, err := c.Relay.rootCAs(GatewayPrefix); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// IsLoopback reports whether host is "localhost" or a loopback IP. An
// empty host (":8080") binds every interface, so it is not loopback.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Local reports whether no credentials are configured: the gateway then
// starts the emulator and a listener in-process.
func (c *Gateway) Local() bool {
	return c.Relay.none()
}

// validateSource allows no source (local mode) or exactly one, complete.
func (c *Gateway) validateSource() error {
	return c.Relay.validate(GatewayPrefix)
}

// Credentials resolves the configured credential source; call it only when
// !Local(). Errors name the variable (or the config.json field) and never
// contain a key.
func (c *Gateway) Credentials() (relay.Credentials, error) {
	if c.Local() {
		return relay.Credentials{}, errors.New("credentials: none configured (local mode)")
	}
	return c.Relay.resolve(GatewayPrefix)
}

// RelayHTTPClient is the HTTP client for the relay's WebSocket dials and
// HTTP requests: nil (the relay package's default) unless GATEWAY_RELAY_CA_FILE
// names extra CAs to trust. Errors name the variable.
func (c *Gateway) RelayHTTPClient() (*http.Client, error) {
	return c.Relay.httpClient(GatewayPrefix)
}
