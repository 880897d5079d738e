package config

import (
	"fmt"
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
