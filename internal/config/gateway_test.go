package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestLoadGatewayDefaultsIsLocalMode(t *testing.T) {
	testlog.Setenv(t, nil, GatewayPrefix)
	c, err := LoadGateway(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Local() || c.Addr != "127.0.0.1:8080" || c.PoolSize != 4 || c.MaxBodyBytes != 1<<20 ||
		c.TokenMaxTTL != 24*time.Hour || c.ShutdownTimeout != 15*time.Second || c.LogFormat != "text" {
		t.Fatalf("defaults: %+v", c)
	}
}

// loadCredentials loads the gateway configuration from env alone and
// returns its relay credentials, failing the test on an error or in local
// mode.
func loadCredentials(t *testing.T, env map[string]string) relay.Credentials {
	t.Helper()
	testlog.Setenv(t, env, GatewayPrefix)
	c, err := LoadGateway(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Credentials()
	if err != nil || c.Local() {
		t.Fatalf("credentials: %v (local %v)", err, c.Local())
	}
	return cr
}

func TestLoadGatewaySources(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "config.json")
	if err := os.WriteFile(seed, []byte(`{"namespace":"myns","path":"hc1","keyrule":"send","key":"`+testSecret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name         string
		env          map[string]string
		host, entity string
		insecure     bool
	}{
		{"connection string", map[string]string{"GATEWAY_CONNECTION_STRING": "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + testSecret + ";EntityPath=hc"}, "myns.servicebus.windows.net", "hc", false},
		{"seed config.json", map[string]string{"GATEWAY_CONFIG_FILE": seed}, "myns.servicebus.windows.net", "hc1", false},
		{"explicit emulator", map[string]string{"GATEWAY_NAMESPACE": "127.0.0.1:9090", "GATEWAY_ENTITY_PATH": "hc", "GATEWAY_KEY_NAME": "dev", "GATEWAY_KEY": testSecret, "GATEWAY_EMULATOR": "true",
			"GATEWAY_ADDR": "0.0.0.0:8080", "GATEWAY_API_KEYS": "0123456789abcdef,fedcba9876543210", "GATEWAY_CORS_ORIGINS": "https://a.example,http://localhost:3000"}, "127.0.0.1:9090", "hc", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cr := loadCredentials(t, tt.env)
			if cr.Host != tt.host || cr.EntityPath != tt.entity || cr.Insecure != tt.insecure || cr.Key != testSecret {
				t.Errorf("got %v", cr)
			}
		})
	}
}

func TestLoadGatewayListsEveryProblemWithoutSecrets(t *testing.T) {
	testlog.Setenv(t, map[string]string{
		"GATEWAY_CONNECTION_STRING": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=" + testSecret,
		"GATEWAY_ADDR":              "0.0.0.0:8080",
		"GATEWAY_POOL_SIZE":         "0",
		"GATEWAY_LOG_FORMAT":        "xml",
		"GATEWAY_SEND_TIMEOUT":      "1ms",
		"GATEWAY_CORS_ORIGINS":      "https://a.example/path",
	}, GatewayPrefix)
	_, err := LoadGateway(nil, io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"GATEWAY_CONNECTION_STRING", "EntityPath", "GATEWAY_ADDR", "GATEWAY_POOL_SIZE", "GATEWAY_LOG_FORMAT", "GATEWAY_SEND_TIMEOUT", "GATEWAY_CORS_ORIGINS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, testSecret) {
		t.Errorf("error contains the key:\n%s", msg)
	}

	testlog.Setenv(t, map[string]string{"GATEWAY_API_KEYS": "short-" + testSecret[:4], "GATEWAY_KEY": testSecret, "GATEWAY_CONFIG_FILE": "/nonexistent"}, GatewayPrefix)
	_, err = LoadGateway(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_API_KEYS: key 1 is shorter") || !strings.Contains(err.Error(), "only one source") || strings.Contains(err.Error(), testSecret[:4]) {
		t.Errorf("got %v", err)
	}

	testlog.Setenv(t, map[string]string{"GATEWAY_POOL_SIZE": "four", "GATEWAY_SEND_TIMEOUT": "10", "GATEWAY_ALLOW_INSECURE_BIND": "maybe"}, GatewayPrefix)
	_, err = LoadGateway(nil, io.Discard)
	for _, want := range []string{"GATEWAY_POOL_SIZE", "GATEWAY_SEND_TIMEOUT", "GATEWAY_ALLOW_INSECURE_BIND"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse errors: %v lacks %s", err, want)
		}
	}

	testlog.Setenv(t, map[string]string{"GATEWAY_ADRR": "127.0.0.1:1"}, GatewayPrefix)
	if _, err = LoadGateway(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "GATEWAY_ADRR") {
		t.Errorf("unknown variable: got %v", err)
	}
}

func TestGatewayBindRules(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr  string
		keys  []string
		allow bool
		ok    bool
	}{
		{"127.0.0.1:8080", nil, false, true},
		{"localhost:8080", nil, false, true},
		{"[::1]:8080", nil, false, true},
		{"0.0.0.0:8080", nil, false, false},
		{":8080", nil, false, false},
		{"10.1.2.3:8080", nil, false, false},
		{"0.0.0.0:8080", []string{"0123456789abcdef"}, false, true},
		{"0.0.0.0:8080", nil, true, true},
		{"nonsense", nil, false, false},
	} {
		c := Gateway{Addr: tt.addr, APIKeys: tt.keys, AllowInsecureBind: tt.allow}
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s keys=%v allow=%v: err %v, want ok=%v", tt.addr, tt.keys, tt.allow, err, tt.ok)
		}
	}
}

func TestGatewayUsageNamesEveryVariable(t *testing.T) {
	testlog.Setenv(t, nil, GatewayPrefix)
	var help strings.Builder
	if _, err := LoadGateway([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	u := help.String()
	for _, want := range []string{"GATEWAY_CONNECTION_STRING", "GATEWAY_CONFIG_FILE", "GATEWAY_API_KEYS", "GATEWAY_CORS_ORIGINS", "GATEWAY_TOKEN_MAX_TTL", "GATEWAY_ALLOW_INSECURE_BIND", "GATEWAY_SHUTDOWN_TIMEOUT", "127.0.0.1:8080"} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %s", want)
		}
	}
}

// TestGatewayDefaultsMatchEmptyEnvironment checks GatewayDefaults against
// what LoadGateway reads from an environment without GATEWAY_* variables.
func TestGatewayDefaultsMatchEmptyEnvironment(t *testing.T) {
	testlog.Setenv(t, nil, GatewayPrefix)
	want, err := LoadGateway(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := GatewayDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("GatewayDefaults() = %+v\nLoadGateway(nil, io.Discard) = %+v", got, want)
	}
}

// TestLoadGatewayReportsEveryProblem sets several mistakes at once; each
// must be reported, naming its variable, in one run.
func TestLoadGatewayReportsEveryProblem(t *testing.T) {
	testlog.Setenv(t, map[string]string{
		"GATEWAY_POOLSIZE":          "3",
		"GATEWAY_SEND_TIMEOUT":      "ten",
		"GATEWAY_ADDR":              "0.0.0.0:8080",
		"GATEWAY_CONNECTION_STRING": "hello",
	}, GatewayPrefix)
	_, err := LoadGateway(nil, io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"GATEWAY_POOLSIZE: unknown variable; did you mean GATEWAY_POOL_SIZE?",
		"GATEWAY_SEND_TIMEOUT: not a duration: write a number with a unit, such as 10s, 1m30s",
		"GATEWAY_ADDR: a non-loopback address needs GATEWAY_API_KEYS",
		"GATEWAY_CONNECTION_STRING: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "GATEWAY_SEND_TIMEOUT"); n != 1 {
		t.Errorf("GATEWAY_SEND_TIMEOUT reported %d times:\n%v", n, err)
	}
}

func TestLoadGatewayProblems(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"misspelt, closest name suggested", map[string]string{"GATEWAY_ADRR": "127.0.0.1:1"}, "GATEWAY_ADRR: unknown variable; did you mean GATEWAY_ADDR?"},
		{"misspelt list", map[string]string{"GATEWAY_API_KEY": "0123456789abcdef"}, "did you mean GATEWAY_API_KEYS?"},
		{"unknown, nothing close", map[string]string{"GATEWAY_COMPLETELY_DIFFERENT_THING": "x"}, "GATEWAY_COMPLETELY_DIFFERENT_THING: unknown variable\n"},
		{"duration without unit", map[string]string{"GATEWAY_DIAL_TIMEOUT": "10"}, "GATEWAY_DIAL_TIMEOUT: not a duration: write a number with a unit, such as 10s, 1m30s or 500ms"},
		{"number", map[string]string{"GATEWAY_POOL_SIZE": "four"}, "GATEWAY_POOL_SIZE: not a whole number"},
		{"boolean", map[string]string{"GATEWAY_ALLOW_INSECURE_BIND": "maybe"}, "GATEWAY_ALLOW_INSECURE_BIND: not a boolean: write true or false"},
		{"CA file missing", map[string]string{"GATEWAY_RELAY_CA_FILE": filepath.Join(dir, "none.pem")}, "GATEWAY_RELAY_CA_FILE: open "},
		{"CA file not PEM", map[string]string{"GATEWAY_RELAY_CA_FILE": notPEM}, "GATEWAY_RELAY_CA_FILE " + notPEM + ": holds no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testlog.Setenv(t, tt.env, GatewayPrefix)
			_, err := LoadGateway(nil, io.Discard)
			if err == nil || !strings.Contains(err.Error()+"\n", tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestHelpTablesAligned checks that every binary's -h prints its variable
// table aligned by spaces: every row's second column starts at the same
// offset.
func TestHelpTablesAligned(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		load   func(out io.Writer) error
	}{
		{GatewayPrefix, func(out io.Writer) error { _, err := LoadGateway([]string{"-h"}, out); return err }},
		{ListenerPrefix, func(out io.Writer) error { _, err := LoadListener([]string{"-h"}, out); return err }},
		{EmulatorPrefix, func(out io.Writer) error { _, err := LoadEmulator([]string{"-h"}, out); return err }},
	} {
		t.Run(tt.prefix, func(t *testing.T) {
			testlog.Setenv(t, nil, tt.prefix)
			var help strings.Builder
			if err := tt.load(&help); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("-h: %v", err)
			}
			col, rows := -1, 0
			for _, l := range strings.Split(help.String(), "\n") {
				if !strings.HasPrefix(l, tt.prefix+"_") {
					continue
				}
				if strings.Contains(l, "\t") {
					t.Fatalf("raw tab in %q", l)
				}
				name, _, _ := strings.Cut(l, " ")
				c := len(name) + len(l[len(name):]) - len(strings.TrimLeft(l[len(name):], " "))
				if col == -1 {
					col = c
				} else if c != col {
					t.Errorf("row %s: second column at %d, want %d", name, c, col)
				}
				rows++
			}
			if rows < 5 {
				t.Errorf("only %d variable rows:\n%s", rows, help.String())
			}
		})
	}
}

// TestGatewayDrainDelayLocal: local mode (no credentials) drains for 0 s
// unless GATEWAY_DRAIN_DELAY is set; with credentials the default is 5 s.
func TestGatewayDrainDelayLocal(t *testing.T) {
	const cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=s;SharedAccessKey=" + testSecret + ";EntityPath=hc"
	for _, tt := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"GATEWAY_DRAIN_DELAY": "2s"}, 2 * time.Second},
		{map[string]string{"GATEWAY_CONNECTION_STRING": cs}, 5 * time.Second},
	} {
		testlog.Setenv(t, tt.env, GatewayPrefix)
		c, err := LoadGateway(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.DrainDelay != tt.want {
			t.Errorf("%v: DrainDelay = %v, want %v", tt.env, c.DrainDelay, tt.want)
		}
	}
}

// TestGatewayMemoryLimitSet tells an explicit GATEWAY_MEMORY_LIMIT (even
// one equal to the default, or 0) from the default, which must not
// override the container's cgroup limit.
func TestGatewayMemoryLimitSet(t *testing.T) {
	for _, tt := range []struct {
		env     map[string]string
		wantSet bool
		want    int64
	}{
		{nil, false, 50331648},
		{map[string]string{"GATEWAY_MEMORY_LIMIT": "50331648"}, true, 50331648},
		{map[string]string{"GATEWAY_MEMORY_LIMIT": "0"}, true, 0},
	} {
		testlog.Setenv(t, tt.env, GatewayPrefix)
		c, err := LoadGateway(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.MemoryLimitSet() != tt.wantSet || c.MemoryLimit != tt.want {
			t.Errorf("%v: MemoryLimitSet() = %v, MemoryLimit = %d; want %v, %d", tt.env, c.MemoryLimitSet(), c.MemoryLimit, tt.wantSet, tt.want)
		}
	}
	if d := GatewayDefaults(); d.MemoryLimitSet() {
		t.Error("GatewayDefaults().MemoryLimitSet() = true")
	}
}
