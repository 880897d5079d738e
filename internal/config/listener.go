package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// ListenerPrefix is the environment prefix of cmd/listener.
const ListenerPrefix = "LISTENER"

// Listener is cmd/listener's configuration, read from LISTENER_* variables.
// Exactly one credential source is used: ConnectionString, ConfigFile, or
// the explicit fields (Namespace, EntityPath, KeyName, Key).
type Listener struct {
	Relay // LISTENER_CONNECTION_STRING, …; one is required

	Forward        string        `split_words:"true" desc:"local service URL (http or https); relayed HTTP requests are proxied to it and WebSocket messages POSTed to it. Empty: print only. The --forward flag overrides it"`
	ForwardTimeout time.Duration `split_words:"true" default:"30s" validate:"min=100ms" desc:"how long the local service may take to answer one forwarded request or message"`

	MaxMessageBytes int64         `split_words:"true" default:"1048576" validate:"min=1024" desc:"largest WebSocket message, relayed HTTP request body or forwarded response body, in bytes"`
	TokenTTL        time.Duration `split_words:"true" default:"1h" validate:"min=1m" desc:"lifetime of the SAS tokens minted for the control channel; renewed before expiry"`
	PingInterval    time.Duration `split_words:"true" default:"30s" validate:"min=1s,max=30s" desc:"WebSocket ping interval on the control channel, at most 30s (Azure drops idle channels after ~4 min)"`
	LogLevel        string        `split_words:"true" default:"info" validate:"oneof=debug info warn error" desc:"log level on stderr: debug, info, warn or error"`
	LogFormat       string        `split_words:"true" default:"text" validate:"oneof=text json" desc:"log format on stderr: text or json"`

	forwardFlag bool // Forward came from --forward
}

// LoadListener reads LISTENER_* variables, then args (--forward overrides
// LISTENER_FORWARD; -h prints the usage on out and returns flag.ErrHelp),
// rejects unknown variables (a typo would otherwise be silently ignored)
// and validates the result, listing every problem by variable name and
// never a secret's value.
func LoadListener(args []string, out io.Writer) (Listener, error) {
	var c Listener
	err := load(ListenerPrefix, &c, command{name: "listener", head: listenerUsageHead, flags: c.bindFlags}, args, out)
	return c, err
}

const listenerUsageHead = `Usage: listener [--forward URL]

Listens on an Azure Relay hybrid connection (or the relay-emulator) and prints
each WebSocket message it receives as one JSON line on stdout:

  {"time":"…","connection":"…","type":"text","text":"…"}       (or "base64" for binary)

HTTP requests (HTTP request mode) are printed and answered 200 with a JSON
receipt. With --forward, requests are proxied to the local service (the path
after the hybrid connection name is kept) and its response is relayed back;
WebSocket messages are POSTed to the URL. Logs go to stderr.
`

// bindFlags binds --forward, which overrides LISTENER_FORWARD.
func (c *Listener) bindFlags(fs *flag.FlagSet) {
	fs.Func("forward", "local service `URL` to proxy HTTP requests and POST messages to (overrides LISTENER_FORWARD)", func(v string) error {
		c.Forward, c.forwardFlag = v, true
		return nil
	})
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
	name := "LISTENER_FORWARD"
	if c.forwardFlag {
		name = "--forward"
	}
	if err := validateForward(name, c.Forward); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := c.Relay.rootCAs(ListenerPrefix); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// validateSource requires exactly one source, complete.
func (c *Listener) validateSource() error {
	if c.Relay.none() {
		return errors.New("credentials: set LISTENER_CONNECTION_STRING, LISTENER_CONFIG_FILE, or LISTENER_NAMESPACE, LISTENER_ENTITY_PATH, LISTENER_KEY_NAME and LISTENER_KEY")
	}
	return c.Relay.validate(ListenerPrefix)
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
	return c.Relay.resolve(ListenerPrefix)
}

// RelayHTTPClient is the HTTP client for the relay's WebSocket dials and
// HTTP requests: nil (the relay package's default) unless LISTENER_RELAY_CA_FILE
// names extra CAs to trust. Errors name the variable.
func (c *Listener) RelayHTTPClient() (*http.Client, error) {
	return c.Relay.httpClient(ListenerPrefix)
}
