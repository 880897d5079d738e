package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/relaygate/relaygate/internal/relay"
)

// Relay is the credential block embedded in Gateway and Listener: a
// connection string, a seed config.json file, or the explicit fields, read
// from PREFIX_CONNECTION_STRING, PREFIX_CONFIG_FILE, … under the binary's
// prefix. Whether no source at all is allowed is the binary's rule.
type Relay struct {
	ConnectionString string `split_words:"true" desc:"Azure Relay connection string: Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=… (the gateway needs the Send right, the listener Listen; add ;UseDevelopmentEmulator=true for a relay-emulator over plain ws://)"`
	ConfigFile       string `split_words:"true" desc:"path to the seed quickstart's config.json ({\"namespace\",\"path\",\"keyrule\",\"key\"}); instead of the connection string"`
	Namespace        string `split_words:"true" desc:"explicit credentials: namespace host (NS.servicebus.windows.net, a bare NS, or host:port of an emulator)"`
	EntityPath       string `split_words:"true" desc:"explicit credentials: hybrid connection name"`
	KeyName          string `split_words:"true" desc:"explicit credentials: SAS rule name (the gateway needs the Send right, the listener Listen)"`
	Key              string `split_words:"true" desc:"explicit credentials: SAS rule key (never logged)"`
	Emulator         bool   `split_words:"true" default:"false" desc:"explicit credentials: talk plain ws:// and http:// to a standalone relay-emulator"`

	RelayCAFile string `split_words:"true" desc:"PEM file of extra CA certificates to trust for the relay's TLS (wss://, https://), added to the system's; e.g. the relay-emulator's RELAY_EMULATOR_TLS_CA_FILE"`
}

// rootCAs returns the system's CAs plus those of RelayCAFile, or nil when
// it is unset (the system's alone). Errors name the variable under prefix.
func (r Relay) rootCAs(prefix string) (*x509.CertPool, error) {
	if r.RelayCAFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(r.RelayCAFile)
	if err != nil {
		return nil, fmt.Errorf("%s_RELAY_CA_FILE: %w", prefix, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s_RELAY_CA_FILE %s: holds no PEM certificate", prefix, r.RelayCAFile)
	}
	return pool, nil
}

// httpClient returns the client for the relay's dials and requests: nil
// (the relay package's default) without RelayCAFile, else one trusting
// its CAs too. Without keep-alives: a WebSocket handshake is hijacked
// anyway, and an idle connection left by a refused dial would only hold
// up the relay's shutdown.
func (r Relay) httpClient(prefix string) (*http.Client, error) {
	roots, err := r.rootCAs(prefix)
	if roots == nil || err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// explicit reports whether any of the explicit fields is set.
func (r Relay) explicit() bool {
	return r.Namespace != "" || r.EntityPath != "" || r.KeyName != "" || r.Key != ""
}

// none reports whether no credential source is set.
func (r Relay) none() bool {
	return r.ConnectionString == "" && r.ConfigFile == "" && !r.explicit()
}

// explicitNames names the explicit fields' variables together.
func explicitNames(prefix string) string {
	return prefix + "_NAMESPACE/ENTITY_PATH/KEY_NAME/KEY"
}

// validate rejects more than one source and incomplete explicit
// credentials, naming variables under prefix; with no source set it
// returns nil.
func (r Relay) validate(prefix string) error {
	var set []string
	if r.ConnectionString != "" {
		set = append(set, prefix+"_CONNECTION_STRING")
	}
	if r.ConfigFile != "" {
		set = append(set, prefix+"_CONFIG_FILE")
	}
	if r.explicit() {
		set = append(set, explicitNames(prefix))
	}
	if len(set) > 1 {
		return fmt.Errorf("credentials: set only one source, not %s", strings.Join(set, " and "))
	}
	if r.explicit() {
		var missing []string
		for _, f := range []struct{ name, v string }{
			{"_NAMESPACE", r.Namespace}, {"_ENTITY_PATH", r.EntityPath},
			{"_KEY_NAME", r.KeyName}, {"_KEY", r.Key},
		} {
			if f.v == "" {
				missing = append(missing, prefix+f.name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("credentials: %s required with explicit credentials", strings.Join(missing, ", "))
		}
	}
	return nil
}

// resolve returns the credentials of the connection string, else of the
// config file, else of the explicit fields (a bare namespace gets
// ".servicebus.windows.net"). Errors name the variable under prefix (or
// the config.json field) and never contain a key.
func (r Relay) resolve(prefix string) (relay.Credentials, error) {
	switch {
	case r.ConnectionString != "":
		cr, err := relay.ParseConnectionString(r.ConnectionString)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONNECTION_STRING: %w", prefix, err)
		}
		return cr, nil
	case r.ConfigFile != "":
		data, err := os.ReadFile(r.ConfigFile)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONFIG_FILE: %w", prefix, err)
		}
		cr, err := relay.ParseSeedConfig(data)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONFIG_FILE %s: %w", prefix, r.ConfigFile, err)
		}
		return cr, nil
	}
	ns := strings.TrimSpace(r.Namespace)
	if ns != "" && !strings.ContainsAny(ns, ".:") {
		ns += ".servicebus.windows.net"
	}
	cr := relay.Credentials{
		Host:       ns,
		EntityPath: strings.Trim(r.EntityPath, "/"),
		KeyName:    r.KeyName,
		Key:        r.Key,
		Insecure:   r.Emulator,
	}
	if err := cr.Validate(); err != nil {
		return relay.Credentials{}, fmt.Errorf("%s: %w", explicitNames(prefix), err)
	}
	return cr, nil
}
