package emulator

import (
	"errors"
	"fmt"
	"strings"

	"github.com/relaygate/relaygate/internal/config"
)

// entraConfigFrom returns the emulator's Entra mode configuration, or nil when
// RELAY_EMULATOR_ENTRA is off.
func entraConfigFrom(c config.Emulator) (*EntraConfig, error) {
	if !c.Entra {
		return nil, nil
	}
	ec := &EntraConfig{Issuer: c.EntraIssuer, JWKSFile: c.EntraJWKSFile}
	for i, s := range strings.FieldsFunc(c.EntraClients, func(r rune) bool { return r == ';' || r == ' ' || r == '\t' || r == '\n' }) {
		cl, err := ParseEntraClient(s)
		if err != nil {
			return nil, fmt.Errorf("RELAY_EMULATOR_ENTRA_CLIENTS (--entra-client) #%d: %v", i+1, err)
		}
		ec.Clients = append(ec.Clients, cl)
	}
	if c.EntraKeyFile != "" {
		k, err := LoadOrCreateEntraKey(c.EntraKeyFile)
		if err != nil {
			return nil, fmt.Errorf("RELAY_EMULATOR_ENTRA_KEY_FILE (--entra-key-file): %w", err)
		}
		ec.Key = k
	}
	return ec, nil
}

// MintEntra returns, for c (the relay-emulator's configuration), a development Entra token with the roles of
// --mint-entra-token ("Send", "role=Send", "Listen,Send"), signed with the
// key of --entra-key-file and valid for an hour, which an emulator started
// with --entra and the same key file and issuer accepts.
func MintEntra(c config.Emulator) (string, error) {
	if c.EntraKeyFile == "" {
		return "", errors.New("--mint-entra-token: set RELAY_EMULATOR_ENTRA_KEY_FILE (--entra-key-file) to the key file the emulator uses")
	}
	var roles []string
	for r := range strings.SplitSeq(c.MintEntraToken, ",") {
		r = strings.TrimSpace(r)
		if k, v, ok := strings.Cut(r, "="); ok && strings.EqualFold(strings.TrimSpace(k), "role") {
			r = strings.TrimSpace(v)
		}
		if RightsFromRoles([]string{r}) == 0 {
			return "", fmt.Errorf("--mint-entra-token: unknown role %q (want Send, Listen, Manage or an Azure Relay role name)", r)
		}
		roles = append(roles, r)
	}
	c.Entra = true
	ec, err := entraConfigFrom(c)
	if err != nil {
		return "", err
	}
	ec.JWKSFile = ""
	iss, err := NewEntraIssuer(*ec)
	if err != nil {
		return "", err
	}
	return iss.Mint(EntraClaims{Roles: roles})
}
