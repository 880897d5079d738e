package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/relaygate/relaygate/internal/azauth"
	"github.com/relaygate/relaygate/internal/relay"
)

// authEntra is the PREFIX_AUTH value selecting Microsoft Entra ID.
const authEntra = "entra"

// entra reports whether PREFIX_AUTH=entra.
func (r Relay) entra() bool { return strings.EqualFold(r.Auth, authEntra) }

// validateEntra checks the Entra ID form of the credential source: the
// namespace and the hybrid connection, from a connection string without a
// key or the explicit fields, and no SAS secret anywhere. Errors name the
// variables.
func (s Relay) validateEntra(prefix string) error {
	var problems []string
	switch {
	case s.ConfigFile != "":
		problems = append(problems, fmt.Sprintf("%s_CONFIG_FILE: holds a SAS key; not allowed with %s_AUTH=entra (use %s_NAMESPACE and %s_ENTITY_PATH)", prefix, prefix, prefix, prefix))
	case s.ConnectionString != "" && (s.Namespace != "" || s.EntityPath != ""):
		problems = append(problems, fmt.Sprintf("credentials: set only one source, not %s_CONNECTION_STRING and %s_NAMESPACE/ENTITY_PATH", prefix, prefix))
	case s.ConnectionString == "" && (s.Namespace == "" || s.EntityPath == ""):
		problems = append(problems, fmt.Sprintf("%s_AUTH=entra: set %s_NAMESPACE and %s_ENTITY_PATH (or %s_CONNECTION_STRING=Endpoint=sb://…/;EntityPath=… without a key)", prefix, prefix, prefix, prefix))
	}
	if s.KeyName != "" {
		problems = append(problems, fmt.Sprintf("%s_KEY_NAME: not allowed with %s_AUTH=entra (Entra ID needs no key)", prefix, prefix))
	}
	if s.Key != "" {
		problems = append(problems, fmt.Sprintf("%s_KEY: not allowed with %s_AUTH=entra (Entra ID needs no key)", prefix, prefix))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// resolveEntra returns the credentials of the Entra ID source with a token
// source from azauth (DefaultAzureCredential, or the managed identity
// PREFIX_MANAGED_IDENTITY_CLIENT_ID). Building it does no network I/O.
func (s Relay) resolveEntra(prefix string) (relay.Credentials, error) {
	if err := s.validateEntra(prefix); err != nil {
		return relay.Credentials{}, err
	}
	var cr relay.Credentials
	if s.ConnectionString != "" {
		c, err := relay.ParseEntraConnectionString(s.ConnectionString)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONNECTION_STRING: %w", prefix, err)
		}
		cr = c
	} else {
		ns := strings.TrimSpace(s.Namespace)
		if !strings.ContainsAny(ns, ".:") {
			ns += ".servicebus.windows.net"
		}
		cr = relay.Credentials{Host: ns, EntityPath: strings.Trim(s.EntityPath, "/"), Insecure: s.Emulator}
		if err := cr.ValidateTarget(); err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_NAMESPACE/ENTITY_PATH: %w", prefix, err)
		}
	}
	ts, err := azauth.NewTokenSource(azauth.Options{
		ManagedIdentityClientID:  s.ManagedIdentityClientID,
		DisableInstanceDiscovery: loopbackAuthority(os.Getenv("AZURE_AUTHORITY_HOST")),
	})
	if err != nil {
		return relay.Credentials{}, fmt.Errorf("%s_AUTH=entra: %w", prefix, err)
	}
	cr.TokenSource = ts
	return cr, nil
}

// loopbackAuthority reports whether AZURE_AUTHORITY_HOST (read by
// azidentity itself) points at this machine, such as relay-emulator's
// stand-in token endpoint: instance discovery would ask
// login.microsoftonline.com about it and fail.
func loopbackAuthority(raw string) bool {
	u, err := url.Parse(raw)
	return raw != "" && err == nil && IsLoopback(u.Hostname())
}
