package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/testlog"
)

const testSecret = "c2VjcmV0LWtleS1uZXZlci1sb2dnZWQ="

func TestLoadListenerSources(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "config.json")
	if err := os.WriteFile(seed, []byte(`{"namespace":"myns","path":"hc1","keyrule":"RootManageSharedAccessKey","key":"`+testSecret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		env               map[string]string
		host, entity, key string
		insecure          bool
	}{
		{
			name: "connection string",
			env:  map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:9443/;SharedAccessKeyName=dev;SharedAccessKey=" + testSecret + ";EntityPath=hc;UseDevelopmentEmulator=true"},
			host: "127.0.0.1:9443", entity: "hc", key: "dev", insecure: true,
		},
		{
			name: "seed config.json",
			env:  map[string]string{"LISTENER_CONFIG_FILE": seed},
			host: "myns.servicebus.windows.net", entity: "hc1", key: "RootManageSharedAccessKey",
		},
		{
			name: "explicit fields, bare namespace",
			env: map[string]string{"LISTENER_NAMESPACE": "myns", "LISTENER_ENTITY_PATH": "/hc2/",
				"LISTENER_KEY_NAME": "listen", "LISTENER_KEY": testSecret},
			host: "myns.servicebus.windows.net", entity: "hc2", key: "listen",
		},
		{
			name: "explicit fields, emulator",
			env: map[string]string{"LISTENER_NAMESPACE": "relay-emulator:9090", "LISTENER_ENTITY_PATH": "hc",
				"LISTENER_KEY_NAME": "dev", "LISTENER_KEY": testSecret, "LISTENER_EMULATOR": "true"},
			host: "relay-emulator:9090", entity: "hc", key: "dev", insecure: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testlog.Setenv(t, tt.env, ListenerPrefix)
			c, err := LoadListener(nil, io.Discard)
			if err != nil {
				t.Fatalf("LoadListener: %v", err)
			}
			cr, err := c.Credentials()
			if err != nil {
				t.Fatalf("Credentials: %v", err)
			}
			if cr.Host != tt.host || cr.EntityPath != tt.entity || cr.KeyName != tt.key || cr.Key != testSecret || cr.Insecure != tt.insecure {
				t.Errorf("got %s host=%q entity=%q keyName=%q insecure=%v, want host=%q entity=%q keyName=%q insecure=%v",
					cr, cr.Host, cr.EntityPath, cr.KeyName, cr.Insecure, tt.host, tt.entity, tt.key, tt.insecure)
			}
			if c.ForwardTimeout != 30*time.Second || c.TokenTTL != time.Hour || c.LogLevel != "info" || c.MaxMessageBytes != 1<<20 {
				t.Errorf("defaults: got %+v", c)
			}
		})
	}
}

func TestLoadListenerErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{
			name: "no credentials",
			want: []string{"LISTENER_CONNECTION_STRING", "LISTENER_CONFIG_FILE", "LISTENER_NAMESPACE"},
		},
		{
			name: "two sources",
			env:  map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://x/", "LISTENER_CONFIG_FILE": "/nonexistent"},
			want: []string{"only one source"},
		},
		{
			name: "explicit fields incomplete",
			env:  map[string]string{"LISTENER_NAMESPACE": "ns", "LISTENER_KEY": testSecret},
			want: []string{"LISTENER_ENTITY_PATH", "LISTENER_KEY_NAME"},
		},
		{
			name: "bad connection string",
			env:  map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=http://ns/;SharedAccessKeyName=x;SharedAccessKey=" + testSecret + ";EntityPath=hc"},
			want: []string{"LISTENER_CONNECTION_STRING", "Endpoint"},
		},
		{
			name: "missing config file",
			env:  map[string]string{"LISTENER_CONFIG_FILE": "/nonexistent/config.json"},
			want: []string{"LISTENER_CONFIG_FILE"},
		},
		{
			name: "every problem at once",
			env: map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=" + testSecret + ";EntityPath=hc",
				"LISTENER_LOG_LEVEL": "loud", "LISTENER_FORWARD": "ftp://localhost/", "LISTENER_FORWARD_TIMEOUT": "1ms"},
			want: []string{"LISTENER_LOG_LEVEL", "LISTENER_FORWARD:", "LISTENER_FORWARD_TIMEOUT"},
		},
		{
			name: "forward URL with a password",
			env: map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=k;EntityPath=hc",
				"LISTENER_FORWARD": "http://user:" + testSecret + "@localhost:3000/"},
			want: []string{"LISTENER_FORWARD: must not contain user information"},
		},
		{
			name: "unparsable duration",
			env:  map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=k;EntityPath=hc", "LISTENER_TOKEN_TTL": "soon"},
			want: []string{"LISTENER_TOKEN_TTL"},
		},
		{
			name: "unknown variable",
			env:  map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=k;EntityPath=hc", "LISTENER_FORWRAD": "http://x"},
			want: []string{"LISTENER_FORWRAD"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testlog.Setenv(t, tt.env, ListenerPrefix)
			_, err := LoadListener(nil, io.Discard)
			if err == nil {
				t.Fatal("LoadListener: got nil error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, testSecret) {
				t.Errorf("error leaks the secret: %q", msg)
			}
		})
	}
}

func TestListenerForwardFlag(t *testing.T) {
	testlog.Setenv(t, map[string]string{"LISTENER_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=x;SharedAccessKey=k;EntityPath=hc",
		"LISTENER_FORWARD": "http://127.0.0.1:9/env"}, ListenerPrefix)
	c, err := LoadListener([]string{"--forward", "http://127.0.0.1:3000/base"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if u := c.ForwardURL(); u == nil || u.Host != "127.0.0.1:3000" || u.Path != "/base" {
		t.Errorf("ForwardURL: got %v", u)
	}
	for _, bad := range []string{"localhost:3000", "ftp://x/", "http:///x", "http://u:p@x/", "::"} {
		_, err := LoadListener([]string{"--forward", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--forward") {
			t.Errorf("--forward %q: got %v, want an error naming --forward", bad, err)
		} else if strings.Contains(err.Error(), bad) {
			t.Errorf("--forward %q: error echoes the value: %v", bad, err)
		}
	}
}

func TestListenerUsage(t *testing.T) {
	testlog.Setenv(t, nil, ListenerPrefix)
	var help strings.Builder
	if _, err := LoadListener([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	u := help.String()
	for _, v := range []string{"LISTENER_CONNECTION_STRING", "LISTENER_CONFIG_FILE", "LISTENER_NAMESPACE", "LISTENER_ENTITY_PATH",
		"LISTENER_KEY_NAME", "LISTENER_KEY", "LISTENER_EMULATOR", "LISTENER_FORWARD", "LISTENER_FORWARD_TIMEOUT",
		"LISTENER_MAX_MESSAGE_BYTES", "LISTENER_TOKEN_TTL", "LISTENER_PING_INTERVAL", "LISTENER_LOG_LEVEL", "LISTENER_LOG_FORMAT"} {
		if !strings.Contains(u, v+" ") && !strings.Contains(u, v+"\t") {
			t.Errorf("usage does not list %s", v)
		}
	}
}
