package relay_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/relay"
)

func TestWebSocketURL(t *testing.T) {
	t.Parallel()
	azure := relay.Credentials{Host: "ns.servicebus.windows.net", EntityPath: "hc1"}
	emu := relay.Credentials{Host: "127.0.0.1:5055", EntityPath: "hc1", Insecure: true}
	tests := []struct {
		name   string
		c      relay.Credentials
		action relay.Action
		o      relay.URLOptions
		want   string
	}{
		{"listen", azure, relay.ActionListen, relay.URLOptions{ID: "id1"},
			"wss://ns.servicebus.windows.net/$hc/hc1?sb-hc-action=listen&sb-hc-id=id1"},
		{"connect with suffix and app query first", azure, relay.ActionConnect,
			relay.URLOptions{ID: "id2", Suffix: "/sub/path/", Query: url.Values{"foo": {"bar"}, "sb-hc-action": {"listen"}, "SB-HC-ID": {"x"}}},
			"wss://ns.servicebus.windows.net/$hc/hc1/sub/path?foo=bar&sb-hc-action=connect&sb-hc-id=id2"},
		{"emulator ws with token in query", emu, relay.ActionConnect,
			relay.URLOptions{ID: "a b", Token: "SharedAccessSignature sr=x&sig=a+b/c=&se=1&skn=k"},
			"ws://127.0.0.1:5055/$hc/hc1?sb-hc-action=connect&sb-hc-id=a+b&sb-hc-token=SharedAccessSignature+sr%3Dx%26sig%3Da%2Bb%2Fc%3D%26se%3D1%26skn%3Dk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.c.WebSocketURL(tt.action, tt.o).String()
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if tt.o.Token != "" && u.Query().Get(relay.QueryToken) != tt.o.Token {
				t.Errorf("token does not round-trip: got %q", u.Query().Get(relay.QueryToken))
			}
		})
	}
}

func TestWebSocketURLFreshID(t *testing.T) {
	t.Parallel()
	c := relay.Credentials{Host: "ns", EntityPath: "hc"}
	seen := map[string]bool{}
	for range 100 {
		id := c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).Query().Get(relay.QueryID)
		if id == "" || seen[id] {
			t.Fatalf("sb-hc-id %q is empty or repeated", id)
		}
		seen[id] = true
	}
}

func TestHTTPURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    relay.Credentials
		o    relay.URLOptions
		want string
	}{
		{"plain", relay.Credentials{Host: "ns", EntityPath: "hc"}, relay.URLOptions{ID: "ignored"}, "https://ns/hc"},
		{"emulator suffix query token", relay.Credentials{Host: "127.0.0.1:1", EntityPath: "hc", Insecure: true},
			relay.URLOptions{Suffix: "a/b", Query: url.Values{"q": {"1 2"}, "sb-hc-token": {"smuggled"}}, Token: "T&x"},
			"http://127.0.0.1:1/hc/a/b?q=1+2&sb-hc-token=T%26x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.HTTPURL(tt.o).String(); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWithRejectStatus(t *testing.T) {
	t.Parallel()
	addr := "wss://relay/$hc/hc1/sub?foo=bar&sb-hc-action=accept&sb-hc-id=xyz_G1"
	got := relay.WithRejectStatus(addr, 418, "I'm a teapot & more")
	if !strings.HasPrefix(got, addr+"&") {
		t.Fatalf("address not kept verbatim: %s", got)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get(relay.QueryStatusCode) != "418" || q.Get(relay.QueryStatusDescription) != "I'm a teapot & more" || q.Get("foo") != "bar" {
		t.Fatalf("got query %v", q)
	}
	if got := relay.WithRejectStatus("ws://h/$hc/x", 400, "no"); got != "ws://h/$hc/x?sb-hc-statusCode=400&sb-hc-statusDescription=no" {
		t.Fatalf("no query: got %s", got)
	}
}
