package config_test

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/emulator"
)

func TestLoadEmulatorDefaultsGenerateDevKey(t *testing.T) {
	c, err := config.LoadEmulator(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ec, dev, err := c.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if dev == nil || dev.Name != config.DevKeyName || len(dev.Key) < 40 || dev.Rights != emulator.RightManage {
		t.Fatalf("dev rule = %v", dev)
	}
	if ec.Addr != "127.0.0.1:8090" || !ec.AutoCreate || ec.MaxListeners != 25 || ec.TokenGrace != time.Minute || ec.TLS != nil {
		t.Errorf("defaults: %+v", ec)
	}
	if c.ConnectionEntity() != "hc1" {
		t.Errorf("ConnectionEntity = %q", c.ConnectionEntity())
	}
}

func TestLoadEmulatorEnvAndFlags(t *testing.T) {
	t.Setenv("RELAY_EMULATOR_RULES", "envrule=ENVKEY:Listen; other=K2:Send")
	t.Setenv("RELAY_EMULATOR_ENTITIES", "hc1,open:anonymous")
	t.Setenv("RELAY_EMULATOR_ACCEPT_TIMEOUT", "5s")
	t.Setenv("RELAY_EMULATOR_AUTO_CREATE", "false")
	c, err := config.LoadEmulator([]string{"--accept-timeout", "7s", "--tls", "--tls-ca-file", "/tmp/x.pem"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ec, dev, err := c.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if dev != nil {
		t.Error("generated a key although rules were given")
	}
	if len(ec.Rules) != 2 || ec.Rules[0].Name != "envrule" || ec.Rules[0].Rights != emulator.RightListen || ec.Rules[1].Rights != emulator.RightSend {
		t.Errorf("rules = %v", ec.Rules)
	}
	if len(ec.Entities) != 2 || ec.Entities[1].RequiresClientAuthorization || ec.AutoCreate {
		t.Errorf("entities = %+v auto=%v", ec.Entities, ec.AutoCreate)
	}
	if ec.AcceptTimeout != 7*time.Second {
		t.Errorf("flag did not override env: %v", ec.AcceptTimeout)
	}
	if ec.TLS == nil || ec.TLS.CAFile != "/tmp/x.pem" {
		t.Errorf("TLS = %+v", ec.TLS)
	}

	// --rule replaces the environment's rules and may repeat.
	c, err = config.LoadEmulator([]string{"--rule", "a=KA", "--rule", "hc1/b=KB:Send"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ec, _, _ = c.ServerConfig()
	if len(ec.Rules) != 2 || ec.Rules[0].Name != "a" || ec.Rules[1].Entity != "hc1" {
		t.Errorf("flag rules = %v", ec.Rules)
	}
}

func TestLoadEmulatorErrorsNeverShowKeys(t *testing.T) {
	t.Setenv("RELAY_EMULATOR_RULES", "good=SECRETKEY1:Admin")
	_, err := config.LoadEmulator([]string{"--max-listeners", "0", "--addr", "nope"}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"RELAY_EMULATOR_RULES", "unknown right", "RELAY_EMULATOR_MAX_LISTENERS", "RELAY_EMULATOR_ADDR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "SECRETKEY1") {
		t.Errorf("error shows the key: %v", err)
	}
	var help bytes.Buffer
	t.Setenv("RELAY_EMULATOR_RULES", "good=SECRETKEY1")
	if _, err := config.LoadEmulator([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if strings.Contains(help.String(), "SECRETKEY1") || !strings.Contains(help.String(), "RELAY_EMULATOR_RULES") || !strings.Contains(help.String(), "--rule") && !strings.Contains(help.String(), "-rule") {
		t.Errorf("usage shows a key or lacks the rule docs:\n%s", help.String())
	}
	t.Setenv("RELAY_EMULATOR_RULE", "typo=x")
	if _, err := config.LoadEmulator(nil, &bytes.Buffer{}); err == nil {
		t.Error("unknown RELAY_EMULATOR_RULE accepted")
	}
}
