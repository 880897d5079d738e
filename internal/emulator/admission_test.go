package emulator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestConnectErrors(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.AutoCreate = false
		c.Entities = []emulator.Entity{{Name: "hc1", RequiresClientAuthorization: true}, {Name: "other", RequiresClientAuthorization: true}}
		c.Rules = append(c.Rules,
			emulator.Rule{Name: "listenOnly", Key: emulatortest.RandomKey(), Rights: emulator.RightListen},
			emulator.Rule{Name: "sendOther", Key: emulatortest.RandomKey(), Rights: emulator.RightSend, Entity: "other"},
		)
	})
	good := s.Credentials("hc1")
	expired := relay.CreateToken(good.ResourceURI(), good.KeyName, good.Key, time.Now().Add(-time.Minute))
	otherScope := relay.CreateToken("http://"+good.Host+"/other", good.KeyName, good.Key, time.Now().Add(time.Hour))
	badSig := relay.CreateToken(good.ResourceURI(), good.KeyName, "wrong-key", time.Now().Add(time.Hour))
	unknownKey := relay.CreateToken(good.ResourceURI(), "nobody", good.Key, time.Now().Add(time.Hour))
	tests := []struct {
		name, entity, token string
		code                int
		reason              string
	}{
		{"no token", "hc1", "", 401, "MissingToken"},
		{"malformed", "hc1", "Bearer xyz", 401, "MalformedToken"},
		{"bad signature", "hc1", badSig, 401, "The token has an invalid signature."},
		{"unknown key", "hc1", unknownKey, 401, "invalid signature"},
		{"expired", "hc1", expired, 401, "The token is expired."},
		{"wrong scope", "hc1", otherScope, 403, "InvalidAudience"},
		{"unknown entity", "nope", token(t, good), 404, "Endpoint does not exist."},
		{"no listener", "hc1", token(t, good), 404, "Endpoint does not exist."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			c.EntityPath = tt.entity
			_, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), tt.token, nil)
			if err == nil || resp == nil {
				t.Fatalf("dial: %v, want %d", err, tt.code)
			}
			if resp.StatusCode != tt.code || !strings.Contains(resp.Status, tt.reason) || !strings.Contains(resp.Status, "TrackingId:") ||
				!strings.Contains(resp.Status, "SystemTracker:sb://") || !strings.Contains(resp.Status, "Timestamp:") {
				t.Errorf("got %q, want %d with %q and tracking info", resp.Status, tt.code, tt.reason)
			}
			if i := strings.Index(tt.token, "sig="); i >= 0 && strings.Contains(resp.Status, tt.token[i:i+20]) {
				t.Errorf("status leaks the signature")
			}
		})
	}
}

func TestRightsAndEntityRules(t *testing.T) {
	t.Parallel()
	listenKey, otherKey := emulatortest.RandomKey(), emulatortest.RandomKey()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.Rules = append(c.Rules,
			emulator.Rule{Name: "listenOnly", Key: listenKey, Rights: emulator.RightListen},
			emulator.Rule{Name: "otherSend", Key: otherKey, Rights: emulator.RightSend | emulator.RightListen, Entity: "other"},
		)
	})
	host := s.Addr()
	mk := func(entity, name, key string) relay.Credentials {
		return relay.Credentials{Host: host, EntityPath: entity, KeyName: name, Key: key, Insecure: true}
	}
	listen(t, s, "hc1", relay.URLOptions{})
	tests := []struct {
		name   string
		c      relay.Credentials
		action relay.Action
		code   int
	}{
		{"listen-only rule cannot send", mk("hc1", "listenOnly", listenKey), relay.ActionConnect, 403},
		{"entity rule on its entity", mk("other", "otherSend", otherKey), relay.ActionListen, 101},
		{"entity rule elsewhere", mk("hc1", "otherSend", otherKey), relay.ActionConnect, 401},
		{"listen-only rule can listen", mk("hc1", "listenOnly", listenKey), relay.ActionListen, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := dialWS(t, dialer(nil), tt.c.WebSocketURL(tt.action, relay.URLOptions{}).String(), token(t, tt.c), nil)
			if tt.code == 101 {
				if err != nil {
					t.Fatalf("dial: %v (%s)", err, status(resp))
				}
				ws.Close()
				return
			}
			if resp == nil || resp.StatusCode != tt.code {
				t.Fatalf("got %s, want %d", status(resp), tt.code)
			}
			if tt.code == 403 && !hasReason(resp, "'Send' claim(s) are required") {
				t.Errorf("reason = %q", resp.Status)
			}
		})
	}
}

func TestTokenInQueryAndEscapedPrefix(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	c := s.Credentials("hc1")
	u := c.WebSocketURL(relay.ActionListen, relay.URLOptions{Token: token(t, c)})
	u.RawPath = strings.Replace(u.EscapedPath(), "/$hc/", "/%24hc/", 1)
	ws, resp, err := dialWS(t, dialer(nil), u.String(), "", nil)
	if err != nil {
		t.Fatalf("listen with sb-hc-token via /%%24hc/: %v (%s)", err, status(resp))
	}
	ws.Close()
}

func TestAnonymousSenders(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) {
		c.Entities = []emulator.Entity{{Name: "open", RequiresClientAuthorization: false}}
	})
	cc := listen(t, s, "open", relay.URLOptions{})
	c := s.Credentials("open")
	sender := connectAsync(t, dialer(nil), c.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), "", nil)
	acceptAddr(t, dialer(nil), readAccept(t, cc).Address, nil)
	if res := wait(t, sender); res.err != nil {
		t.Fatalf("anonymous sender: %v (%s)", res.err, status(res.resp))
	}
	// Listeners still need a token.
	_, resp, _ := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), "", nil)
	if resp == nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous listener: %s, want 401", status(resp))
	}
}
