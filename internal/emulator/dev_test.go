package emulator_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
)

func TestConfigFromDefaultsGenerateDevKey(t *testing.T) {
	c, err := config.LoadEmulator(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ec, dev, entity, err := emulator.ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if dev == nil || dev.Name != emulator.DevKeyName || len(dev.Key) < 40 || dev.Rights != emulator.RightManage {
		t.Fatalf("dev rule = %v", dev)
	}
	if ec.Addr != "127.0.0.1:8090" || !ec.AutoCreate || ec.MaxListeners != 25 || ec.TokenGrace != time.Minute || ec.TLS != nil {
		t.Errorf("defaults: %+v", ec)
	}
	if entity != "hc1" {
		t.Errorf("entity = %q", entity)
	}
	if a, b := emulator.DevRule(), emulator.DevRule(); a.Key == b.Key {
		t.Error("DevRule returned the same key twice")
	}
}

func TestConfigFromEnvAndFlags(t *testing.T) {
	t.Setenv("RELAY_EMULATOR_RULES", "envrule=ENVKEY:Listen; other=K2:Send")
	t.Setenv("RELAY_EMULATOR_ENTITIES", "hc1,open:anonymous")
	t.Setenv("RELAY_EMULATOR_ACCEPT_TIMEOUT", "5s")
	t.Setenv("RELAY_EMULATOR_AUTO_CREATE", "false")
	c, err := config.LoadEmulator([]string{"--accept-timeout", "7s", "--tls", "--tls-ca-file", "/tmp/x.pem"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ec, dev, entity, err := emulator.ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if dev != nil {
		t.Error("generated a key although rules were given")
	}
	if len(ec.Rules) != 2 || ec.Rules[0].Name != "envrule" || ec.Rules[0].Rights != emulator.RightListen || ec.Rules[1].Rights != emulator.RightSend {
		t.Errorf("rules = %v", ec.Rules)
	}
	if len(ec.Entities) != 2 || ec.Entities[1].RequiresClientAuthorization || ec.AutoCreate || entity != "hc1" {
		t.Errorf("entities = %+v auto=%v entity=%q", ec.Entities, ec.AutoCreate, entity)
	}
	if ec.AcceptTimeout != 7*time.Second {
		t.Errorf("flag did not override env: %v", ec.AcceptTimeout)
	}
	if ec.TLS == nil || ec.TLS.CAFile != "/tmp/x.pem" {
		t.Errorf("TLS = %+v", ec.TLS)
	}

	// --rule replaces the environment's rules and may repeat.
	c, err = config.LoadEmulator([]string{"--rule", "a=KA", "--rule", "hc1/b=KB:Send"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ec, _, _, _ = emulator.ConfigFrom(c)
	if len(ec.Rules) != 2 || ec.Rules[0].Name != "a" || ec.Rules[1].Entity != "hc1" {
		t.Errorf("flag rules = %v", ec.Rules)
	}
}

func TestConfigFromErrorsNeverShowKeys(t *testing.T) {
	t.Setenv("RELAY_EMULATOR_RULES", "good=SECRETKEY1:Admin;bad")
	t.Setenv("RELAY_EMULATOR_ENTITIES", "hc:sometimes")
	c, err := config.LoadEmulator(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = emulator.ConfigFrom(c)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"RELAY_EMULATOR_RULES (--rule) #1", "unknown right", "#2", "RELAY_EMULATOR_ENTITIES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "SECRETKEY1") {
		t.Errorf("error shows the key: %v", err)
	}
}
