package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/relaygate/relaygate/internal/config"
)

// DevKeyName is the name of the development rule DevRule returns, the
// name Azure gives a namespace's root rule.
const DevKeyName = "RootManageSharedAccessKey"

// DevRule returns a namespace-level Manage rule (send, listen and manage)
// named DevKeyName with a fresh random 256-bit key, base64-encoded like
// Azure's: the development key of local mode, the benchmark, the
// standalone emulator without rules, and tests.
func DevRule() Rule {
	return Rule{Name: DevKeyName, Key: RandomKey(), Rights: RightManage}
}

// RandomKey returns a fresh random 256-bit key, base64-encoded like
// Azure's.
func RandomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.StdEncoding.EncodeToString(b)
}

// ConfigFrom maps cmd/relay-emulator's configuration to the server's:
// it parses the rules and entities (every problem at once, naming the
// variable and flag, never a key) and, with no rule, adds DevRule and
// returns it as dev so the caller can print a connection string once;
// otherwise dev is nil. entity is the EntityPath for that connection
// string: the first declared entity, else c.DevEntity.
func ConfigFrom(c config.Emulator) (cfg Config, dev *Rule, entity string, err error) {
	var problems []string
	for i, s := range c.RuleList() {
		r, err := ParseRule(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("RELAY_EMULATOR_RULES (--rule) #%d: %v", i+1, err))
			continue
		}
		cfg.Rules = append(cfg.Rules, r)
	}
	for _, s := range c.Entities {
		e, err := ParseEntity(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("RELAY_EMULATOR_ENTITIES (--entity): %v", err))
			continue
		}
		cfg.Entities = append(cfg.Entities, e)
	}
	if len(problems) > 0 {
		return Config{}, nil, "", fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	cfg.Addr, cfg.AutoCreate = c.Addr, c.AutoCreate
	cfg.TokenGrace, cfg.AcceptTimeout, cfg.RequestTimeout = c.TokenGrace, c.AcceptTimeout, c.RequestTimeout
	cfg.MaxListeners, cfg.MaxMessageBytes = c.MaxListeners, c.MaxMessageBytes
	if c.TLS || c.TLSCert != "" {
		cfg.TLS = &TLSConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, CAFile: c.TLSCAFile, Hosts: c.TLSHosts}
	}
	if len(cfg.Rules) == 0 {
		r := DevRule()
		cfg.Rules, dev = []Rule{r}, &r
	}
	entity = c.DevEntity
	if len(cfg.Entities) > 0 {
		entity = cfg.Entities[0].Name
	}
	return cfg, dev, entity, nil
}
