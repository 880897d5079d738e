package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/relaygate/relaygate/internal/relay"
)

// credentialSource is the credential part shared by Gateway and Listener:
// a connection string, a seed config.json file, or the explicit fields,
// named by the binary's prefix (PREFIX_CONNECTION_STRING, …) in errors.
// Whether no source at all is allowed is the caller's rule.
type credentialSource struct {
	prefix           string
	connectionString string
	configFile       string
	namespace        string
	entityPath       string
	keyName          string
	key              string
	insecure         bool
	auth             string // "sas" (default) or "entra" (entra.go)
	miClientID       string // user-assigned managed identity, Entra only
}

// explicit reports whether any of the explicit fields is set.
func (s credentialSource) explicit() bool {
	return s.namespace != "" || s.entityPath != "" || s.keyName != "" || s.key != ""
}

// none reports whether no credential source is set.
func (s credentialSource) none() bool {
	return s.connectionString == "" && s.configFile == "" && !s.explicit()
}

// explicitNames names the explicit fields' variables together.
func (s credentialSource) explicitNames() string {
	return s.prefix + "_NAMESPACE/ENTITY_PATH/KEY_NAME/KEY"
}

// validate rejects more than one source and incomplete explicit
// credentials; with no source set it returns nil.
func (s credentialSource) validate() error {
	if s.entra() {
		return s.validateEntra()
	}
	var set []string
	if s.connectionString != "" {
		set = append(set, s.prefix+"_CONNECTION_STRING")
	}
	if s.configFile != "" {
		set = append(set, s.prefix+"_CONFIG_FILE")
	}
	if s.explicit() {
		set = append(set, s.explicitNames())
	}
	if len(set) > 1 {
		return fmt.Errorf("credentials: set only one source, not %s", strings.Join(set, " and "))
	}
	if s.explicit() {
		var missing []string
		for _, f := range []struct{ name, v string }{
			{"_NAMESPACE", s.namespace}, {"_ENTITY_PATH", s.entityPath},
			{"_KEY_NAME", s.keyName}, {"_KEY", s.key},
		} {
			if f.v == "" {
				missing = append(missing, s.prefix+f.name)
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
// ".servicebus.windows.net"). Errors name the variable (or the config.json
// field) and never contain a key.
func (s credentialSource) resolve() (relay.Credentials, error) {
	if s.entra() {
		return s.resolveEntra()
	}
	switch {
	case s.connectionString != "":
		cr, err := relay.ParseConnectionString(s.connectionString)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONNECTION_STRING: %w", s.prefix, err)
		}
		return cr, nil
	case s.configFile != "":
		data, err := os.ReadFile(s.configFile)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONFIG_FILE: %w", s.prefix, err)
		}
		cr, err := relay.ParseSeedConfig(data)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONFIG_FILE %s: %w", s.prefix, s.configFile, err)
		}
		return cr, nil
	}
	ns := strings.TrimSpace(s.namespace)
	if ns != "" && !strings.ContainsAny(ns, ".:") {
		ns += ".servicebus.windows.net"
	}
	cr := relay.Credentials{
		Host:       ns,
		EntityPath: strings.Trim(s.entityPath, "/"),
		KeyName:    s.keyName,
		Key:        s.key,
		Insecure:   s.insecure,
	}
	if err := cr.Validate(); err != nil {
		return relay.Credentials{}, fmt.Errorf("%s: %w", s.explicitNames(), err)
	}
	return cr, nil
}
