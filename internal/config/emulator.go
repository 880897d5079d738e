package config

import (
	"errors"
	"flag"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// EmulatorPrefix is the environment prefix of cmd/relay-emulator.
const EmulatorPrefix = "RELAY_EMULATOR"

// Emulator is cmd/relay-emulator's configuration: RELAY_EMULATOR_*
// variables, each overridable by the flag of the same name in kebab case
// (RELAY_EMULATOR_ACCEPT_TIMEOUT ↔ --accept-timeout). Rules and entities are
// repeatable flags; in the environment they are lists.
type Emulator struct {
	Addr       string   `split_words:"true" default:"127.0.0.1:8090" desc:"listen address host:port for ws(s):// and http(s):// (port 0 picks a free one)"`
	Rules      string   `split_words:"true" desc:"SAS rules NAME=KEY[:Listen,Send,Manage] (default Manage), or ENTITY/NAME=KEY[:…] for one hybrid connection, separated by spaces or ';'. None: a development key is generated and a connection string printed once on stdout"`
	Entities   []string `split_words:"true" desc:"declared hybrid connections NAME or NAME:anonymous (senders need no token), comma-separated"`
	AutoCreate bool     `split_words:"true" default:"true" desc:"create a hybrid connection on its first authorized use; false: undeclared ones are 404"`
	DevEntity  string   `split_words:"true" default:"hc1" desc:"EntityPath of the printed development connection string (when no rule is given and no entity is declared)"`

	TLS     bool   `split_words:"true" default:"false" desc:"serve wss:// and https://; without RELAY_EMULATOR_TLS_CERT/RELAY_EMULATOR_TLS_KEY a CA and certificate are generated and the CA written to RELAY_EMULATOR_TLS_CA_FILE"`
	TLSCert string `split_words:"true" desc:"PEM certificate file to serve (implies TLS)"`
	TLSKey  string `split_words:"true" desc:"PEM private key file of RELAY_EMULATOR_TLS_CERT"`
	// The tag names the variable: split_words would make TLSCA_FILE of
	// the Go name.
	TLSCAFile string   `envconfig:"TLS_CA_FILE" default:"relay-emulator-ca.pem" desc:"where the generated CA certificate is written for clients to trust (GATEWAY_RELAY_CA_FILE, LISTENER_RELAY_CA_FILE)"`
	TLSHosts  []string `split_words:"true" desc:"host names and IPs of the generated certificate, comma-separated (default 127.0.0.1,::1,localhost)"`

	TokenGrace      time.Duration `split_words:"true" default:"60s" validate:"min=1ms" desc:"how long an expired control channel token is tolerated before the channel is closed with 1008"`
	AcceptTimeout   time.Duration `split_words:"true" default:"30s" validate:"min=10ms" desc:"validity of accept/request rendezvous addresses and how long a sender waits for a listener to accept"`
	RequestTimeout  time.Duration `split_words:"true" default:"60s" validate:"min=10ms" desc:"how long an HTTP request-mode sender waits for the listener's response (then 504)"`
	MaxListeners    int           `split_words:"true" default:"25" validate:"min=1,max=10000" desc:"control channels per hybrid connection (the service allows 25); the next gets 403"`
	MaxMessageBytes int64         `split_words:"true" default:"16777216" validate:"min=1024" desc:"largest relayed WebSocket message and request-mode body, in bytes"`

	MetricsAddr     string        `split_words:"true" desc:"admin listen address for Prometheus GET /metrics (e.g. 127.0.0.1:9464); empty: off"`
	ShutdownTimeout time.Duration `split_words:"true" default:"5s" validate:"min=10ms" desc:"grace period on SIGINT/SIGTERM"`
	LogLevel        string        `split_words:"true" default:"info" validate:"oneof=debug info warn error" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat       string        `split_words:"true" default:"text" validate:"oneof=text json" desc:"log format on stderr: text or json"`
}

// LoadEmulator reads RELAY_EMULATOR_* variables, then args (flags
// override the environment), and validates the result, listing every
// problem by name and never a key. With -h it prints usage to out and
// returns flag.ErrHelp. Rules and entities are checked by the emulator
// when it maps the result (emulator.ConfigFrom).
func LoadEmulator(args []string, out io.Writer) (Emulator, error) {
	var c Emulator
	err := load(EmulatorPrefix, &c, command{name: "relay-emulator", head: emulatorUsageHead, flags: c.bindFlags}, args, out)
	return c, err
}

const emulatorUsageHead = `Usage: relay-emulator [flags]

A local Azure Relay Hybrid Connections emulator: listeners, WebSocket senders
and HTTP request mode over ws:// and http:// (or wss:// and https://), with
SAS authentication. With no --rule it generates a development key and prints
a connection string once on stdout. Every flag has an environment variable
(flags win).
`

// RuleList splits Rules on white space and ';' (commas belong to the
// rights list): one NAME=KEY[:rights] or ENTITY/NAME=KEY[:rights] each.
func (c *Emulator) RuleList() []string {
	return strings.FieldsFunc(c.Rules, func(r rune) bool { return r == ';' || r == ' ' || r == '\t' || r == '\n' })
}

// ruleList is the repeatable --rule flag: it appends to Rules, and its
// first use replaces the environment's value. -h never shows keys.
type ruleList struct {
	dst *string
	set bool
}

func (l *ruleList) String() string { return "" }

func (l *ruleList) Set(v string) error {
	if strings.ContainsAny(v, "; \t\n") {
		return errors.New("one rule per --rule (no spaces or ';')")
	}
	if !l.set {
		*l.dst, l.set = "", true
	}
	if *l.dst != "" {
		*l.dst += ";"
	}
	*l.dst += v
	return nil
}

// stringList is a repeatable flag; the first use replaces the environment's
// value.
type stringList struct {
	dst *[]string
	set bool
}

func (l *stringList) String() string {
	if l == nil || l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *stringList) Set(v string) error {
	if !l.set {
		*l.dst, l.set = nil, true
	}
	*l.dst = append(*l.dst, v)
	return nil
}

func (c *Emulator) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen `host:port`")
	fs.Var(&ruleList{dst: &c.Rules}, "rule", "SAS rule `NAME=KEY[:Listen,Send,Manage]` or ENTITY/NAME=KEY[:…] (repeatable)")
	fs.Var(&stringList{dst: &c.Entities}, "entity", "declared hybrid connection `NAME[:anonymous]` (repeatable)")
	fs.BoolVar(&c.AutoCreate, "auto-create", c.AutoCreate, "create hybrid connections on first authorized use")
	fs.StringVar(&c.DevEntity, "dev-entity", c.DevEntity, "`EntityPath` of the printed development connection string")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "serve wss:// and https:// (generated certificate unless --tls-cert/--tls-key)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate `file`")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key `file`")
	fs.StringVar(&c.TLSCAFile, "tls-ca-file", c.TLSCAFile, "`file` to write the generated CA certificate to")
	fs.Var(&stringList{dst: &c.TLSHosts}, "tls-host", "`host` or IP of the generated certificate (repeatable)")
	fs.DurationVar(&c.TokenGrace, "token-grace", c.TokenGrace, "tolerance for an expired control channel token")
	fs.DurationVar(&c.AcceptTimeout, "accept-timeout", c.AcceptTimeout, "rendezvous address validity and sender wait")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "HTTP request-mode response timeout (504)")
	fs.IntVar(&c.MaxListeners, "max-listeners", c.MaxListeners, "control channels per hybrid connection")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest relayed message or request body")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "admin `host:port` for GET /metrics (empty: off)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "grace period on SIGINT/SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
}

// Validate checks the cross-field rules. Errors name the variable but
// never a key.
func (c *Emulator) Validate() error {
	var problems []string
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		problems = append(problems, "RELAY_EMULATOR_ADDR: must be host:port")
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		problems = append(problems, "RELAY_EMULATOR_ADDR: bad port")
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			problems = append(problems, "RELAY_EMULATOR_METRICS_ADDR: must be host:port")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		problems = append(problems, "RELAY_EMULATOR_TLS_CERT and RELAY_EMULATOR_TLS_KEY: give both or neither")
	}
	if !c.AutoCreate && len(c.Entities) == 0 {
		problems = append(problems, "RELAY_EMULATOR_ENTITIES: declare at least one entity when RELAY_EMULATOR_AUTO_CREATE=false")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}
