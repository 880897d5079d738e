package deploy

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
)

const (
	emulatorPrefix  = config.EmulatorPrefix
	emulatorAddrVar = config.EmulatorPrefix + "_ADDR"
)

// loadEmulator reads the emulator's configuration as cmd/relay-emulator
// does (environment, then args as flags).
func loadEmulator(args []string) (emulator.Config, error) {
	c, err := config.LoadEmulator(args, io.Discard)
	if err != nil {
		return emulator.Config{}, err
	}
	ec, _, _, err := emulator.ConfigFrom(c)
	return ec, err
}

// emulatorSetup returns the rules and declared entities the compose
// emulator runs with.
func emulatorSetup(t *testing.T, s service) (rules []emulator.Rule, entities []string) {
	t.Helper()
	setEnv(t, serviceEnv(t, s, nil))
	ec, err := loadEmulator(s.Command)
	if err != nil {
		t.Fatalf("relay-emulator: %v", err)
	}
	for _, e := range ec.Entities {
		entities = append(entities, e.Name)
	}
	if ec.AutoCreate {
		t.Errorf("relay-emulator: auto-create is on; a typo in EntityPath would create a second entity instead of failing with 404")
	}
	return ec.Rules, entities
}

// hasRule reports whether rules has name=key with right.
func hasRule(rules []emulator.Rule, entity, name, key string, right emulator.Rights) bool {
	return slices.ContainsFunc(rules, func(r emulator.Rule) bool {
		return r.Name == name && r.Key == key && r.Rights.Has(right) && (r.Entity == "" || strings.EqualFold(r.Entity, entity))
	})
}
