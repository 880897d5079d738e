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
func (s credentialSource) entra() bool { return strings.EqualFold(s.auth, authEntra) }

// validateEntra checks the Entra ID form of the credential source: the
// namespace and the hybrid connection, from a connection string without a
// key or the explicit fields, and no SAS secret anywhere. Errors name the
// variables.
func (s credentialSource) validateEntra() error {
	var problems []string
	switch {
	case s.configFile != "":
		problems = append(problems, fmt.Sprintf("%s_CONFIG_FILE: holds a SAS key; not allowed with %s_AUTH=entra (use %s_NAMESPACE and %s_ENTITY_PATH)", s.prefix, s.prefix, s.prefix, s.prefix))
	case s.connectionString != "" && (s.namespace != "" || s.entityPath != ""):
		problems = append(problems, fmt.Sprintf("credentials: set only one source, not %s_CONNECTION_STRING and %s_NAMESPACE/ENTITY_PATH", s.prefix, s.prefix))
	case s.connectionString == "" && (s.namespace == "" || s.entityPath == ""):
		problems = append(problems, fmt.Sprintf("%s_AUTH=entra: set %s_NAMESPACE and %s_ENTITY_PATH (or %s_CONNECTION_STRING=Endpoint=sb://…/;EntityPath=… without a key)", s.prefix, s.prefix, s.prefix, s.prefix))
	}
	if s.keyName != "" {
		problems = append(problems, fmt.Sprintf("%s_KEY_NAME: not allowed with %s_AUTH=entra (Entra ID needs no key)", s.prefix, s.prefix))
	}
	if s.key != "" {
		problems = append(problems, fmt.Sprintf("%s_KEY: not allowed with %s_AUTH=entra (Entra ID needs no key)", s.prefix, s.prefix))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// resolveEntra returns the credentials of the Entra ID source with a token
// source from azauth (DefaultAzureCredential, or the managed identity
// PREFIX_MANAGED_IDENTITY_CLIENT_ID). Building it does no network I/O.
func (s credentialSource) resolveEntra() (relay.Credentials, error) {
	if err := s.validateEntra(); err != nil {
		return relay.Credentials{}, err
	}
	var cr relay.Credentials
	if s.connectionString != "" {
		c, err := relay.ParseEntraConnectionString(s.connectionString)
		if err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_CONNECTION_STRING: %w", s.prefix, err)
		}
		cr = c
	} else {
		ns := strings.TrimSpace(s.namespace)
		if !strings.ContainsAny(ns, ".:") {
			ns += ".servicebus.windows.net"
		}
		cr = relay.Credentials{Host: ns, EntityPath: strings.Trim(s.entityPath, "/"), Insecure: s.insecure}
		if err := cr.ValidateTarget(); err != nil {
			return relay.Credentials{}, fmt.Errorf("%s_NAMESPACE/ENTITY_PATH: %w", s.prefix, err)
		}
	}
	ts, err := azauth.NewTokenSource(azauth.Options{
		ManagedIdentityClientID:  s.miClientID,
		DisableInstanceDiscovery: loopbackAuthority(os.Getenv("AZURE_AUTHORITY_HOST")),
	})
	if err != nil {
		return relay.Credentials{}, fmt.Errorf("%s_AUTH=entra: %w", s.prefix, err)
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
	return raw != "" && err == nil && isLoopback(u.Hostname())
}
