package config

import (
	"io"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/testlog"
)

func TestLoadGatewayEntra(t *testing.T) {
	for _, tt := range []struct {
		name         string
		env          map[string]string
		host, entity string
		insecure     bool
	}{
		{"explicit", map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_NAMESPACE": "myns", "GATEWAY_ENTITY_PATH": "hc1"}, "myns.servicebus.windows.net", "hc1", false},
		{"connection string", map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_CONNECTION_STRING": "Endpoint=sb://myns.servicebus.windows.net/;EntityPath=hc2"}, "myns.servicebus.windows.net", "hc2", false},
		{"emulator", map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_NAMESPACE": "127.0.0.1:9090", "GATEWAY_ENTITY_PATH": "hc", "GATEWAY_EMULATOR": "true",
			"GATEWAY_MANAGED_IDENTITY_CLIENT_ID": "00000000-0000-0000-0000-000000000001"}, "127.0.0.1:9090", "hc", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cr := loadCredentials(t, tt.env)
			if cr.Host != tt.host || cr.EntityPath != tt.entity || cr.Insecure != tt.insecure || cr.TokenSource == nil || cr.Key != "" {
				t.Errorf("got %v", cr)
			}
			if !strings.Contains(cr.String(), "Entra ID") {
				t.Errorf("String() = %q, want it to say Entra ID", cr.String())
			}
		})
	}
}

func TestLoadEntraErrorsNameTheVariable(t *testing.T) {
	for _, tt := range []struct {
		name   string
		prefix string
		env    map[string]string
		want   []string
	}{
		{"gateway with key", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_NAMESPACE": "ns", "GATEWAY_ENTITY_PATH": "hc", "GATEWAY_KEY_NAME": "send", "GATEWAY_KEY": testSecret},
			[]string{"GATEWAY_KEY_NAME: not allowed with GATEWAY_AUTH=entra", "GATEWAY_KEY: not allowed"}},
		{"gateway without namespace", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_ENTITY_PATH": "hc"},
			[]string{"GATEWAY_AUTH=entra: set GATEWAY_NAMESPACE and GATEWAY_ENTITY_PATH"}},
		{"gateway nothing", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "entra"},
			[]string{"GATEWAY_AUTH=entra: set GATEWAY_NAMESPACE"}},
		{"gateway connection string with key", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=" + testSecret + ";EntityPath=hc"},
			[]string{"GATEWAY_CONNECTION_STRING:", "must not contain SharedAccessKeyName"}},
		{"gateway connection string without entity", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "entra", "GATEWAY_CONNECTION_STRING": "Endpoint=sb://ns/"},
			[]string{"GATEWAY_CONNECTION_STRING:", "EntityPath: is required"}},
		{"gateway bad auth", GatewayPrefix, map[string]string{"GATEWAY_AUTH": "aad"}, []string{"GATEWAY_AUTH"}},
		{"listener config file", ListenerPrefix, map[string]string{"LISTENER_AUTH": "entra", "LISTENER_CONFIG_FILE": "/nonexistent/config.json"},
			[]string{"LISTENER_CONFIG_FILE: holds a SAS key; not allowed with LISTENER_AUTH=entra"}},
		{"listener with key", ListenerPrefix, map[string]string{"LISTENER_AUTH": "entra", "LISTENER_NAMESPACE": "ns", "LISTENER_ENTITY_PATH": "hc", "LISTENER_KEY": testSecret},
			[]string{"LISTENER_KEY: not allowed with LISTENER_AUTH=entra"}},
		{"listener without namespace", ListenerPrefix, map[string]string{"LISTENER_AUTH": "entra", "LISTENER_ENTITY_PATH": "hc"},
			[]string{"LISTENER_AUTH=entra: set LISTENER_NAMESPACE and LISTENER_ENTITY_PATH"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testlog.Setenv(t, tt.env, tt.prefix)
			var err error
			if tt.prefix == GatewayPrefix {
				_, err = LoadGateway(nil, io.Discard)
			} else {
				_, err = LoadListener(nil, io.Discard)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error contains the key: %q", err)
			}
		})
	}
}

func TestLoadListenerEntra(t *testing.T) {
	testlog.Setenv(t, map[string]string{"LISTENER_AUTH": "entra", "LISTENER_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:9/;EntityPath=hc;UseDevelopmentEmulator=true"}, ListenerPrefix)
	c, err := LoadListener(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Credentials()
	if err != nil || cr.TokenSource == nil || cr.Host != "127.0.0.1:9" || !cr.Insecure {
		t.Fatalf("got %v, %v", cr, err)
	}
}
