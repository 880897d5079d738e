package config_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestLoadEmulatorEnvAndFlags(t *testing.T) {
	testlog.Setenv(t, map[string]string{
		"RELAY_EMULATOR_RULES": "envrule=ENVKEY:Listen; other=K2:Send", "RELAY_EMULATOR_ACCEPT_TIMEOUT": "5s",
	}, config.EmulatorPrefix)
	c, err := config.LoadEmulator([]string{"--accept-timeout", "7s", "--tls", "--tls-ca-file", "/tmp/x.pem"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.AcceptTimeout != 7*time.Second || !c.TLS || c.TLSCAFile != "/tmp/x.pem" {
		t.Errorf("flags did not override env: %+v", c)
	}
	if got := c.RuleList(); len(got) != 2 || got[1] != "other=K2:Send" {
		t.Errorf("RuleList = %q", got)
	}
	c, err = config.LoadEmulator([]string{"--rule", "a=KA", "--rule", "hc1/b=KB:Send"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RuleList(); len(got) != 2 || got[0] != "a=KA" {
		t.Errorf("--rule: RuleList = %q", got)
	}
}

func TestLoadEmulatorErrorsNeverShowKeys(t *testing.T) {
	testlog.Setenv(t, map[string]string{"RELAY_EMULATOR_RULES": "good=SECRETKEY1:Admin"}, config.EmulatorPrefix)
	_, err := config.LoadEmulator([]string{"--max-listeners", "0", "--addr", "nope"}, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"RELAY_EMULATOR_MAX_LISTENERS", "RELAY_EMULATOR_ADDR"} {
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
	if strings.Contains(help.String(), "SECRETKEY1") || !strings.Contains(help.String(), "RELAY_EMULATOR_RULES") || !strings.Contains(help.String(), "-rule") {
		t.Errorf("usage shows a key or lacks the rule docs:\n%s", help.String())
	}
	t.Setenv("RELAY_EMULATOR_RULE", "typo=x")
	if _, err := config.LoadEmulator(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "did you mean RELAY_EMULATOR_RULES?") {
		t.Errorf("unknown RELAY_EMULATOR_RULE: got %v", err)
	}
}
