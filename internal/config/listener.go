package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/relaygate/relaygate/internal/relay"
)

// ListenerPrefix is the environment prefix of cmd/listener.
const ListenerPrefix = "LISTENER"

// Listener is cmd/listener's configuration, read from LISTENER_* variables.
// Exactly one credential source is used: ConnectionString, ConfigFile, or
// the explicit fields (Namespace, EntityPath, KeyName, Key).
type Listener struct {
	ConnectionString string `split_words:"true" desc:"Azure Relay connection string: Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=… (add ;UseDevelopmentEmulator=true for a local relay-emulator over plain ws://)"`
	ConfigFile       string `split_words:"true" desc:"path to the seed quickstart's config.json ({\"namespace\",\"path\",\"keyrule\",\"key\"}); instead of LISTENER_CONNECTION_STRING"`
	Namespace        string `split_words:"true" desc:"explicit credentials: namespace host (NS.servicebus.windows.net, a bare NS, or host:port of an emulator)"`
	EntityPath       string `split_words:"true" desc:"explicit credentials: hybrid connection name"`
	KeyName          string `split_words:"true" desc:"explicit credentials: SAS rule name (needs the Listen right)"`
	Key              string `split_words:"true" desc:"explicit credentials: SAS rule key (never logged)"`
	Emulator         bool   `split_words:"true" default:"false" desc:"explicit credentials: talk plain ws:// and http:// to a local relay-emulator"`

	Auth                    string `split_words:"true" default:"sas" validate:"oneof=sas entra" desc:"how to authenticate to the relay: sas (a SAS key or token from the credentials above) or entra (Microsoft Entra ID via DefaultAzureCredential: LISTENER_NAMESPACE and LISTENER_ENTITY_PATH, or LISTENER_CONNECTION_STRING=Endpoint=sb://NS.servicebus.windows.net/;EntityPath=HC, without a key; the identity needs the Azure Relay Listener role)"`
	ManagedIdentityClientID string `split_words:"true" desc:"with LISTENER_AUTH=entra: client id of a user-assigned managed identity to use instead of the DefaultAzureCredential chain (which reads AZURE_CLIENT_ID itself)"`

	Forward        string        `split_words:"true" desc:"local service URL (http or https); relayed HTTP requests are proxied to it and WebSocket messages POSTed to it. Empty: print only. The --forward flag overrides it"`
	ForwardTimeout time.Duration `split_words:"true" default:"30s" validate:"min=100ms" desc:"how long the local service may take to answer one forwarded request or message"`

	MaxMessageBytes int64         `split_words:"true" default:"1048576" validate:"min=1024" desc:"largest WebSocket message, relayed HTTP request body or forwarded response body, in bytes"`
	TokenTTL        time.Duration `split_words:"true" default:"1h" validate:"min=1m" desc:"lifetime of the SAS tokens minted for the control channel; renewed before expiry"`
	PingInterval    time.Duration `split_words:"true" default:"30s" validate:"min=1s,max=30s" desc:"WebSocket ping interval on the control channel, at most 30s (Azure drops idle channels after ~4 min)"`
	LogLevel        string        `split_words:"true" default:"info" validate:"oneof=debug info warn error" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat       string        `split_words:"true" default:"text" validate:"oneof=text json" desc:"log format on stderr: text or json"`
}

// LoadListener reads LISTENER_* variables, rejects unknown ones (a typo
// would otherwise be silently ignored) and validates the result, listing
// every problem by variable name and never a secret's value.
func LoadListener() (Listener, error) {
	var c Listener
	err := load(ListenerPrefix, &c)
	return c, err
}

// ListenerUsage returns the table of every LISTENER_* variable with its
// type, default and description.
func ListenerUsage() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 1, 0, 2, ' ', 0)
	_ = envconfig.Usagef(ListenerPrefix, &Listener{}, tw, envconfig.DefaultTableFormat)
	_ = tw.Flush()
	return b.String()
}

// Validate checks the cross-field rules: one credential source, complete
// explicit credentials and a usable forward URL.
func (c *Listener) Validate() error {
	var problems []string
	if err := c.validateSource(); err != nil {
		problems = append(problems, err.Error())
	} else if _, err := c.Credentials(); err != nil {
		problems = append(problems, err.Error())
	}
	if err := validateForward("LISTENER_FORWARD", c.Forward); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// source is the listener's credential source, named LISTENER_*.
func (c *Listener) source() credentialSource {
	return credentialSource{
		prefix:           ListenerPrefix,
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

// validateSource requires exactly one source, complete.
func (c *Listener) validateSource() error {
	s := c.source()
	if s.none() {
		return errors.New("credentials: set LISTENER_CONNECTION_STRING, LISTENER_CONFIG_FILE, or LISTENER_NAMESPACE, LISTENER_ENTITY_PATH, LISTENER_KEY_NAME and LISTENER_KEY")
	}
	return s.validate()
}

// SetForward overrides Forward (from the --forward flag) and validates it.
func (c *Listener) SetForward(raw string) error {
	if err := validateForward("--forward", raw); err != nil {
		return err
	}
	c.Forward = raw
	return nil
}

// ForwardURL returns the parsed Forward URL, or nil when it is empty.
func (c *Listener) ForwardURL() *url.URL {
	if c.Forward == "" {
		return nil
	}
	u, err := url.Parse(c.Forward)
	if err != nil {
		return nil // unreachable after Validate
	}
	return u
}

// validateForward accepts an empty value or an absolute http(s) URL without
// user information, query or fragment. The value is not echoed: a forward
// URL may carry credentials.
func validateForward(name, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%s: is not a URL", name)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%s: scheme must be http or https", name)
	case u.Host == "":
		return fmt.Errorf("%s: needs a host", name)
	case u.User != nil:
		return fmt.Errorf("%s: must not contain user information", name)
	case u.Fragment != "":
		return fmt.Errorf("%s: must not contain a fragment", name)
	}
	return nil
}

// Credentials resolves the configured credential source. Errors name the
// variable (or the config.json field) and never contain a key.
func (c *Listener) Credentials() (relay.Credentials, error) {
	return c.source().resolve()
}
