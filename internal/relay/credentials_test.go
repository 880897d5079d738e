package relay_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// testKey looks like a real base64 SAS key so that leak checks are meaningful.
const testKey = "8h3Zs0Xr4bY5cJ1kQ9tW2mN7pL6vD0aE+fGhIjKlMno="

func TestParseConnectionString(t *testing.T) {
	t.Parallel()
	tok := relay.CreateToken("http://ns.example.com/hc1", "send", testKey, time.Unix(2000000000, 0))
	tests := []struct {
		name string
		in   string
		want relay.Credentials
	}{
		{
			name: "azure key",
			in:   "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + testKey + ";EntityPath=hc1",
			want: relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1", KeyName: "RootManageSharedAccessKey", Key: testKey},
		},
		{
			name: "case-insensitive keys, spaces, empty parts, trailing semicolon",
			in:   " endpoint = sb://ns.example.com:9443/ ;; sharedaccesskeyname=k;SHAREDACCESSKEY=" + testKey + ";entitypath=/a/b/;",
			want: relay.Credentials{Host: "ns.example.com:9443", EntityPath: "a/b", KeyName: "k", Key: testKey},
		},
		{
			name: "shared access signature",
			in:   "Endpoint=sb://ns.example.com/;SharedAccessSignature=" + tok + ";EntityPath=hc1",
			want: relay.Credentials{Host: "ns.example.com", EntityPath: "hc1", SharedAccessSignature: tok},
		},
		{
			name: "development emulator",
			in:   "Endpoint=sb://127.0.0.1:5055;SharedAccessKeyName=k;SharedAccessKey=" + testKey + ";EntityPath=hc1;UseDevelopmentEmulator=true",
			want: relay.Credentials{Host: "127.0.0.1:5055", EntityPath: "hc1", KeyName: "k", Key: testKey, Insecure: true},
		},
		{
			name: "entity in the endpoint path",
			in:   "Endpoint=sb://ns.example.com/hc9;SharedAccessKeyName=k;SharedAccessKey=" + testKey,
			want: relay.Credentials{Host: "ns.example.com", EntityPath: "hc9", KeyName: "k", Key: testKey},
		},
		{
			name: "EntityPath wins over the endpoint path",
			in:   "EntityPath=hc1;Endpoint=sb://ns.example.com/hc9;SharedAccessKeyName=k;SharedAccessKey=" + testKey,
			want: relay.Credentials{Host: "ns.example.com", EntityPath: "hc1", KeyName: "k", Key: testKey},
		},
		{
			name: "OperationTimeout accepted",
			in:   "Endpoint=sb://ns.example.com/;SharedAccessKeyName=k;SharedAccessKey=" + testKey + ";EntityPath=hc1;OperationTimeout=00:01:00",
			want: relay.Credentials{Host: "ns.example.com", EntityPath: "hc1", KeyName: "k", Key: testKey},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := relay.ParseConnectionString(tt.in)
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	t.Parallel()
	key := ";SharedAccessKey=" + testKey
	tests := []struct {
		name, in, field string
	}{
		{"empty", "  ", "connection string"},
		{"no endpoint", "SharedAccessKeyName=k" + key + ";EntityPath=hc", "Endpoint"},
		{"wrong scheme", "Endpoint=https://ns.example.com/;SharedAccessKeyName=k" + key + ";EntityPath=hc", "Endpoint"},
		{"no host", "Endpoint=sb:///;SharedAccessKeyName=k" + key + ";EntityPath=hc", "Endpoint"},
		{"user info", "Endpoint=sb://u:p@ns/;SharedAccessKeyName=k" + key + ";EntityPath=hc", "Endpoint"},
		{"no entity", "Endpoint=sb://ns/;SharedAccessKeyName=k" + key, "EntityPath"},
		{"no key name", "Endpoint=sb://ns/;EntityPath=hc" + key, "SharedAccessKeyName"},
		{"no key", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k", "SharedAccessKey"},
		{"empty key", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k;SharedAccessKey=", "SharedAccessKey"},
		{"unknown key", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k" + key + ";Colour=blue", "Colour"},
		{"duplicate", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k" + key + key, "SharedAccessKey"},
		{"part without =", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k" + key + ";" + testKey[:10], "part 5"},
		{"bad emulator flag", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k" + key + ";UseDevelopmentEmulator=yes please", "UseDevelopmentEmulator"},
		{"managed identity", "Endpoint=sb://ns/;EntityPath=hc;Authentication=Managed Identity", "Authentication"},
		{"signature and key", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessKeyName=k" + key + ";SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1&skn=k", "SharedAccessSignature"},
		{"bad signature", "Endpoint=sb://ns/;EntityPath=hc;SharedAccessSignature=" + testKey, "SharedAccessSignature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := relay.ParseConnectionString(tt.in)
			if !errors.Is(err, relay.ErrInvalidCredentials) {
				t.Fatalf("got %v, want ErrInvalidCredentials", err)
			}
			if c != (relay.Credentials{}) {
				t.Errorf("got credentials %v with the error, want zero", c)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
			assertNoSecret(t, err.Error(), testKey)
		})
	}
}

// assertNoSecret fails if s contains secret or a recognisable piece of it.
func assertNoSecret(t testing.TB, s, secret string) {
	t.Helper()
	if secret == "" {
		return
	}
	if strings.Contains(s, secret) {
		t.Fatalf("leaks a secret: %q", s)
	}
	if len(secret) >= 16 && strings.Contains(s, secret[4:16]) {
		t.Fatalf("leaks part of a secret: %q", s)
	}
}

func TestCredentialsFormattingRedacts(t *testing.T) {
	t.Parallel()
	tok := relay.CreateToken("http://ns/hc", "k", testKey, time.Unix(2000000000, 0))
	sig := tok[strings.Index(tok, "sig=")+4 : strings.Index(tok, "&se=")]
	for _, c := range []relay.Credentials{
		{Host: "ns", EntityPath: "hc", KeyName: "k", Key: testKey},
		{Host: "ns", EntityPath: "hc", SharedAccessSignature: tok},
	} {
		var logBuf strings.Builder
		slog.New(slog.NewTextHandler(&logBuf, nil)).Info("creds", "c", c)
		slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("creds", "c", c)
		for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), logBuf.String()} {
			assertNoSecret(t, s, testKey)
			assertNoSecret(t, s, sig)
		}
	}
}

func TestParseSeedConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want relay.Credentials
	}{
		{"bare namespace", `{"namespace":"contoso","path":"hyco","keyrule":"Root","key":"` + testKey + `"}`,
			relay.Credentials{Host: "contoso.servicebus.windows.net", EntityPath: "hyco", KeyName: "Root", Key: testKey}},
		{"qualified namespace", `{"namespace":"contoso.servicebus.chinacloudapi.cn","path":"/hyco/","keyrule":"Root","key":"` + testKey + `"}`,
			relay.Credentials{Host: "contoso.servicebus.chinacloudapi.cn", EntityPath: "hyco", KeyName: "Root", Key: testKey}},
		{"host and port", `{"namespace":"localhost:9443","path":"hyco","keyrule":"Root","key":"` + testKey + `","extra":1}`,
			relay.Credentials{Host: "localhost:9443", EntityPath: "hyco", KeyName: "Root", Key: testKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := relay.ParseSeedConfig([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSeedConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, field string }{
		{"not json", `{"namespace":"a","key":"` + testKey, "config.json"},
		{"key not a string", `{"namespace":"a","path":"p","keyrule":"r","key":12345678901234567890}`, "config.json"},
		{"no namespace", `{"path":"p","keyrule":"r","key":"` + testKey + `"}`, "namespace"},
		{"no path", `{"namespace":"a","keyrule":"r","key":"` + testKey + `"}`, "path"},
		{"no keyrule", `{"namespace":"a","path":"p","key":"` + testKey + `"}`, "keyrule"},
		{"no key", `{"namespace":"a","path":"p","keyrule":"r"}`, "key"},
		{"bad namespace", `{"namespace":"a/b","path":"p","keyrule":"r","key":"` + testKey + `"}`, "namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := relay.ParseSeedConfig([]byte(tt.in))
			if !errors.Is(err, relay.ErrInvalidCredentials) {
				t.Fatalf("got %v, want ErrInvalidCredentials", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
			assertNoSecret(t, err.Error(), testKey)
		})
	}
}

func TestCredentialsToken(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	c := relay.Credentials{Host: "ns.example.com:9443", EntityPath: "hc1", KeyName: "k", Key: testKey}
	if got, want := c.ResourceURI(), "http://ns.example.com:9443/hc1"; got != want {
		t.Fatalf("ResourceURI: got %q, want %q", got, want)
	}
	tok, exp, err := c.Token(now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(relay.DefaultTokenTTL); !exp.Equal(want) {
		t.Errorf("default expiry: got %v, want %v", exp, want)
	}
	ver := &relay.Verifier{Keys: func(string, string) []string { return []string{testKey} }, Now: func() time.Time { return now }}
	pt, err := ver.Verify(tok, "ns.example.com", "hc1")
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if pt.KeyName != "k" || !pt.Expiry.Equal(exp) {
		t.Errorf("got key %q expiry %v", pt.KeyName, pt.Expiry)
	}
	_, exp, _ = c.Token(now, 5*time.Minute)
	if want := now.Add(5 * time.Minute); !exp.Equal(want) {
		t.Errorf("ttl expiry: got %v, want %v", exp, want)
	}

	fixed := relay.Credentials{Host: "ns", EntityPath: "hc1", SharedAccessSignature: tok}
	got, gexp, err := fixed.Token(now.Add(time.Hour), time.Minute)
	if err != nil || got != tok || !gexp.Equal(pt.Expiry) {
		t.Errorf("fixed token: got %v %v, want the token unchanged with its own expiry", gexp, err)
	}

	anon := relay.Credentials{Host: "ns", EntityPath: "hc1"}
	if got, _, err := anon.Token(now, 0); got != "" || err != nil {
		t.Errorf("anonymous: got %q %v, want no token", got, err)
	}
}
