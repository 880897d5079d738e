package emulator_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// nodeURL is the WebSocket URL a script gets verbatim: built by relaygate,
// without a token (§11.1: the packages' own builders hard-code wss://…:443).
func nodeURL(c relay.Credentials, action relay.Action) string {
	return c.WebSocketURL(action, relay.URLOptions{}).String()
}

// TestNodeWSListenerEchoesGoSender: a hyco-ws relayed server receives a
// message from relay.Dial through the emulator and echoes it back.
func TestNodeWSListenerEchoesGoSender(t *testing.T) {
	t.Parallel()
	bin := emulatortest.RequireNode(t)
	s := emulatortest.Start(t)
	lc := s.ListenerCredentials("hc1")
	p := emulatortest.StartNode(t, bin, "ws-listener.js", nodeURL(lc, relay.ActionListen), lc)
	p.WaitLine(t, "ready", testTimeout)
	testlog.WaitFor(t, "hyco-ws listener registered", func() bool { return s.ListenerCount("hc1") == 1 })

	ctx := ctxT(t)
	ws, err := relay.Dial(ctx, s.Credentials("hc1"), relay.DialOptions{})
	if err != nil {
		t.Fatalf("relay.Dial to the hyco-ws listener: %v", err)
	}
	defer ws.CloseNow()
	const msg = "hello from go ✓"
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if got := p.WaitLine(t, "message: ", testTimeout); got != "message: "+msg {
		t.Fatalf("listener printed %q, want %q", got, "message: "+msg)
	}
	typ, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if typ != websocket.MessageText || string(data) != msg {
		t.Fatalf("echo %v %q, want text %q", typ, data, msg)
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// TestNodeWSSenderReachesGoListener: hyco-ws relayedConnect reaches a
// relay.Listener through the emulator, and the listener's echo comes back.
func TestNodeWSSenderReachesGoListener(t *testing.T) {
	t.Parallel()
	bin := emulatortest.RequireNode(t)
	s := emulatortest.Start(t)
	got := startGoListener(t, s, "hc1", true)

	// A token signed with a wrong key is refused (the check is real).
	sc := s.Credentials("hc1")
	bad := sc
	bad.Key = emulatortest.RandomKey()
	pb := emulatortest.StartNode(t, bin, "ws-sender.js", nodeURL(bad, relay.ActionConnect), bad)
	select {
	case <-pb.Done():
		if pb.Err() == nil || !strings.Contains(pb.Stderr(), "401") {
			t.Fatalf("ws-sender.js with a wrong key: %v, stderr %q; want exit 1 after a 401", pb.Err(), pb.Stderr())
		}
	case <-time.After(testTimeout):
		t.Fatal("ws-sender.js with a wrong key did not exit")
	}

	const msg = "hello from node ✓"
	p := emulatortest.StartNode(t, bin, "ws-sender.js", nodeURL(sc, relay.ActionConnect), sc, "RELAY_MESSAGE="+msg)
	if m := wait(t, got); m != msg {
		t.Fatalf("Go listener got %q, want %q", m, msg)
	}
	if e := p.WaitLine(t, "echo: ", testTimeout); e != "echo: "+msg {
		t.Fatalf("sender printed %q, want %q", e, "echo: "+msg)
	}
	select {
	case <-p.Done():
		if p.Err() != nil {
			t.Fatalf("ws-sender.js: %v", p.Err())
		}
	case <-time.After(testTimeout):
		t.Fatal("ws-sender.js did not exit after the echo")
	}
}

// TestNodeHTTPSListenerAnswersHTTPSender: a hyco-https relayed server
// answers HTTP request-mode requests from relay.HTTPSender: a small body
// (inline on the control channel) and a 150 kB one (request and response
// through a rendezvous).
func TestNodeHTTPSListenerAnswersHTTPSender(t *testing.T) {
	t.Parallel()
	bin := emulatortest.RequireNode(t)
	s := emulatortest.Start(t)
	lc := s.ListenerCredentials("hc1")
	p := emulatortest.StartNode(t, bin, "https-listener.js", nodeURL(lc, relay.ActionListen), lc)
	p.WaitLine(t, "ready", testTimeout)
	testlog.WaitFor(t, "hyco-https listener registered", func() bool { return s.ListenerCount("hc1") == 1 })

	big := make([]byte, 150_000)
	rand.Read(big)
	sender := &relay.HTTPSender{Credentials: s.Credentials("hc1")}
	for _, tc := range []struct {
		name, method, suffix string
		query                url.Values
		body                 []byte
		channel              string // how the listener got the request
	}{
		{"small", http.MethodPost, "echo/small", url.Values{"q": {"1"}}, []byte("small body from go"), "control"},
		{"large", http.MethodPut, "echo/large", nil, big, "rendezvous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := sender.Do(ctxT(t), tc.method, tc.suffix, tc.query, nil, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatalf("HTTPSender.Do: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %s, want 201 from the listener; body %.200q", resp.Status, body)
			}
			if resp.Header.Get("Via") == "" {
				t.Errorf("response lacks the relay's Via header: %v", resp.Header)
			}
			if m := resp.Header.Get("X-Echo-Method"); m != tc.method {
				t.Errorf("listener saw method %q, want %q", m, tc.method)
			}
			wantURL := "/hc1/" + tc.suffix
			if tc.query != nil {
				wantURL += "?" + tc.query.Encode()
			}
			if u := resp.Header.Get("X-Echo-Url"); u != wantURL {
				t.Errorf("listener saw URL %q, want %q", u, wantURL)
			}
			if !bytes.Equal(body, tc.body) {
				t.Errorf("echoed body: %d bytes, want the %d sent", len(body), len(tc.body))
			}
			want := fmt.Sprintf("request: %s %s %d %s", tc.method, wantURL, len(tc.body), tc.channel)
			if l := p.WaitLine(t, "request: ", testTimeout); l != want {
				t.Errorf("listener printed %q, want %q", l, want)
			}
		})
	}
}
