package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/relaygate/relaygate/internal/relay"
)

// GatewayPrefix is the environment prefix of cmd/gateway.
const GatewayPrefix = "GATEWAY"

// Gateway is cmd/gateway's configuration, read from GATEWAY_* variables.
// At most one credential source is used: ConnectionString, ConfigFile, or
// the explicit fields (Namespace, EntityPath, KeyName, Key). With none the
// gateway runs in local mode (in-process emulator and listener).
type Gateway struct {
	ConnectionString string `split_words:"true" desc:"Azure Relay connection string: Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=… (needs the Send right; add ;UseDevelopmentEmulator=true for a standalone relay-emulator). No credentials at all: local mode"`
	ConfigFile       string `split_words:"true" desc:"path to the seed quickstart's config.json ({\"namespace\",\"path\",\"keyrule\",\"key\"}); instead of GATEWAY_CONNECTION_STRING"`
	Namespace        string `split_words:"true" desc:"explicit credentials: namespace host (NS.servicebus.windows.net, a bare NS, or host:port of an emulator)"`
	EntityPath       string `split_words:"true" desc:"explicit credentials: hybrid connection name"`
	KeyName          string `split_words:"true" desc:"explicit credentials: SAS rule name (needs the Send right)"`
	Key              string `split_words:"true" desc:"explicit credentials: SAS rule key (never logged)"`
	Emulator         bool   `split_words:"true" default:"false" desc:"explicit credentials: talk plain ws:// and http:// to a standalone relay-emulator"`

	Auth                    string `split_words:"true" default:"sas" validate:"oneof=sas entra" desc:"how to authenticate to the relay: sas (a SAS key or token from the credentials above) or entra (Microsoft Entra ID via DefaultAzureCredential: GATEWAY_NAMESPACE and GATEWAY_ENTITY_PATH, or GATEWAY_CONNECTION_STRING=Endpoint=sb://NS.servicebus.windows.net/;EntityPath=HC, without a key; the identity needs the Azure Relay Sender role)"`
	ManagedIdentityClientID string `split_words:"true" desc:"with GATEWAY_AUTH=entra: client id of a user-assigned managed identity to use instead of the DefaultAzureCredential chain (which reads AZURE_CLIENT_ID itself)"`

	Addr              string   `split_words:"true" default:"127.0.0.1:8080" desc:"HTTP listen address host:port. A non-loopback address needs GATEWAY_API_KEYS or GATEWAY_ALLOW_INSECURE_BIND=true"`
	AllowInsecureBind bool     `split_words:"true" default:"false" desc:"allow a non-loopback GATEWAY_ADDR without API keys (anyone who can reach it can send and mint tokens)"`
	APIKeys           []string `split_words:"true" desc:"comma-separated API keys (each at least 16 characters); when set, POST /messages and GET /token need Authorization: Bearer KEY or X-API-Key: KEY"`
	CORSOrigins       []string `split_words:"true" desc:"comma-separated browser origins allowed to call the API (https://app.example), or * for any; empty: no CORS headers"`

	PoolSize        int           `split_words:"true" default:"4" validate:"min=1,max=64" desc:"number of pooled sender WebSockets kept open to the relay"`
	QueueSize       int           `split_words:"true" default:"64" validate:"min=1,max=65536" desc:"messages queued per pooled connection before POST /messages answers 503 overloaded"`
	MaxBodyBytes    int64         `split_words:"true" default:"1048576" validate:"min=1,max=67108864" desc:"largest request body (and listener reply) in bytes; larger bodies get 413"`
	SendTimeout     time.Duration `split_words:"true" default:"10s" validate:"min=100ms" desc:"how long POST /messages may wait for a healthy connection and the write (then 503/504)"`
	DeliveryTimeout time.Duration `split_words:"true" default:"60s" validate:"min=100ms" desc:"how long POST /messages?delivery=request waits for the listener's answer (Azure's own limit is 60s)"`
	WriteTimeout    time.Duration `split_words:"true" default:"10s" validate:"min=100ms" desc:"deadline of one WebSocket write on a pooled connection; a stalled connection is replaced"`
	DialTimeout     time.Duration `split_words:"true" default:"10s" validate:"min=100ms" desc:"deadline of one relay dial (WebSocket handshake including the listener's accept)"`
	PingInterval    time.Duration `split_words:"true" default:"30s" validate:"min=100ms" desc:"WebSocket ping interval on pooled connections (dead ones are replaced)"`
	TokenTTL        time.Duration `split_words:"true" default:"1h" validate:"min=1m" desc:"lifetime of the SAS tokens the pool mints; connections are replaced before their token expires"`
	TokenMaxTTL     time.Duration `split_words:"true" default:"24h" validate:"min=1m" desc:"largest ttl GET /token accepts (its default is 1h, or this cap if smaller)"`
	RetryAfter      time.Duration `split_words:"true" default:"1s" validate:"min=1s" desc:"Retry-After sent with every 503"`
	// MemoryLimit is a soft limit, not a cap: near it the GC runs more often
	// instead of letting the heap double (relaybench: 1,000 clients peak at
	// ~80 MiB RSS without it, ~55 MiB with 48 MiB).
	MemoryLimit     int64         `split_words:"true" default:"50331648" validate:"min=0" desc:"soft memory limit of the Go runtime in bytes (debug.SetMemoryLimit); 0 disables it; ignored when GOMEMLIMIT is set"`
	ShutdownTimeout time.Duration `split_words:"true" default:"15s" validate:"min=100ms" desc:"grace period on SIGINT/SIGTERM for in-flight requests and closing pooled connections"`

	LogLevel  string `split_words:"true" default:"info" validate:"oneof=debug info warn error" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat string `split_words:"true" default:"text" validate:"oneof=text json" desc:"log format on stderr: text or json"`
}

// minAPIKeyLen is the shortest accepted API key.
const minAPIKeyLen = 16

// LoadGateway reads GATEWAY_* variables, rejects unknown ones and validates
// the result, listing every problem by variable name and never a secret's
// value.
func LoadGateway() (Gateway, error) {
	var c Gateway
	err := load(GatewayPrefix, &c)
	return c, err
}

// GatewayUsage returns the table of every GATEWAY_* variable with its type,
// default and description.
func GatewayUsage() string {
	var b strings.Builder
	_ = envconfig.Usagef(GatewayPrefix, &Gateway{}, &b, envconfig.DefaultTableFormat)
	return b.String()
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
	case !isLoopback(host) && len(c.APIKeys) == 0 && !c.AllowInsecureBind:
		problems = append(problems, "GATEWAY_ADDR: a non-loopback address needs GATEWAY_API_KEYS (or GATEWAY_ALLOW_INSECURE_BIND=true)")
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
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a loopback IP. An
// empty host (":8080") binds every interface, so it is not loopback.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// source is the gateway's credential source, named GATEWAY_*.
func (c *Gateway) source() credentialSource {
	return credentialSource{
		prefix:           GatewayPrefix,
		connectionString: c.ConnectionString,
		configFile:       c.ConfigFile,
		namespace:        c.Namespace,
		entityPath:       c.EntityPath,
		keyName:          c.KeyName,
		key:              c.Key,
		insecure:         c.Emulator,
		auth:             c.Auth,
		miClientID:       c.ManagedIdentityClientID,
	}
}

// Local reports whether no credentials are configured: the gateway then
// starts the emulator and a listener in-process.
func (c *Gateway) Local() bool {
	return c.source().none()
}

// validateSource allows no source (local mode) or exactly one, complete.
func (c *Gateway) validateSource() error {
	return c.source().validate()
}

// Credentials resolves the configured credential source; call it only when
// !Local(). Errors name the variable (or the config.json field) and never
// contain a key.
func (c *Gateway) Credentials() (relay.Credentials, error) {
	if c.Local() {
		return relay.Credentials{}, errors.New("credentials: none configured (local mode)")
	}
	return c.source().resolve()
}
