package emulator_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// gotRequest is what the scripted HTTP listener saw.
type gotRequest struct {
	inline bool
	cmd    *relay.RequestCommand
	body   []byte
}

// reply is what the scripted HTTP listener answers.
type reply struct {
	code       int
	desc       string
	headers    map[string]string
	body       []byte
	rendezvous bool // answer on the request rendezvous even if inline
}

// httpListener serves request-mode commands on cc with handle until cc
// fails, the way Microsoft's listeners do: inline requests are answered on
// the control channel (or a rendezvous when asked), address-only requests
// on the rendezvous.
func httpListener(t testing.TB, cc *websocket.Conn, seen chan<- gotRequest, handle func(gotRequest) reply) {
	var mu sync.Mutex // one writer on cc
	go func() {
		for {
			mt, data, err := cc.ReadMessage()
			if err != nil {
				return
			}
			if mt != websocket.TextMessage {
				continue
			}
			m, err := relay.DecodeControlMessage(data)
			if err != nil || m.Request == nil {
				continue
			}
			g := gotRequest{inline: m.Request.Inline(), cmd: m.Request}
			if g.inline && m.Request.HasBody() {
				mt, g.body, err = cc.ReadMessage()
				if err != nil || mt != websocket.BinaryMessage {
					t.Errorf("inline body: type %d err %v", mt, err)
					return
				}
			}
			go serveOne(t, cc, &mu, g, seen, handle)
		}
	}()
}

func serveOne(t testing.TB, cc *websocket.Conn, mu *sync.Mutex, g gotRequest, seen chan<- gotRequest, handle func(gotRequest) reply) {
	var rv *websocket.Conn
	if !g.inline {
		ws, _, err := dialer(nil).Dial(g.cmd.Address, nil)
		if err != nil {
			t.Errorf("request rendezvous: %v", err)
			return
		}
		defer ws.Close()
		rv = ws
		_, data, err := rv.ReadMessage()
		if err != nil {
			t.Errorf("rendezvous request: %v", err)
			return
		}
		m, err := relay.DecodeControlMessage(data)
		if err != nil || m.Request == nil || !m.Request.Inline() {
			t.Errorf("rendezvous request command: %s (%v)", data, err)
			return
		}
		g.cmd = m.Request
		if m.Request.HasBody() {
			_, g.body, err = rv.ReadMessage()
			if err != nil {
				t.Errorf("rendezvous body: %v", err)
				return
			}
		}
	}
	seen <- g
	rep := handle(g)
	if rv == nil && rep.rendezvous {
		ws, _, err := dialer(nil).Dial(g.cmd.Address, nil)
		if err != nil {
			t.Errorf("response rendezvous: %v", err)
			return
		}
		defer ws.Close()
		rv = ws
	}
	cmd := &relay.ControlMessage{Response: &relay.ResponseCommand{
		RequestID: g.cmd.ID, StatusCode: relay.StatusCode(rep.code), StatusDescription: rep.desc,
		ResponseHeaders: rep.headers, Body: rep.body != nil,
	}}
	data, _ := relay.EncodeControlMessage(cmd)
	out := rv
	if out == nil {
		out = cc
		mu.Lock()
		defer mu.Unlock()
	}
	if err := out.WriteMessage(websocket.TextMessage, data); err != nil {
		t.Errorf("write response: %v", err)
		return
	}
	if rep.body != nil {
		if err := out.WriteMessage(websocket.BinaryMessage, rep.body); err != nil {
			t.Errorf("write response body: %v", err)
		}
	}
	if rv != nil {
		// Wait for the emulator to close the rendezvous.
		rv.SetReadDeadline(time.Now().Add(testTimeout))
		rv.ReadMessage()
	}
}

func TestHTTPRequestMode(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	seen := make(chan gotRequest, 1)
	small := []byte(`{"hello":"world"}`)
	big := bytes.Repeat([]byte("x"), 250<<10)
	httpListener(t, cc, seen, func(g gotRequest) reply {
		switch g.cmd.Method {
		case http.MethodPut: // big response through a rendezvous
			return reply{code: 201, desc: "Made It", body: big, rendezvous: true, headers: map[string]string{"Content-Type": "application/octet-stream"}}
		case http.MethodDelete:
			return reply{code: 204, desc: "Gone Now"}
		}
		return reply{code: 202, desc: "Accepted For Real", body: append([]byte("echo:"), g.body...), headers: map[string]string{"X-Reply": "yes", "Connection": "keep-alive"}}
	})
	c := s.Credentials("hc1")
	tok := token(t, c)

	tests := []struct {
		name       string
		method     string
		body       []byte
		chunked    bool
		wantInline bool
		wantCode   int
		wantStatus string
		wantBody   []byte
	}{
		{"inline small", http.MethodPost, small, false, true, 202, "202 Accepted For Real", append([]byte("echo:"), small...)},
		{"inline no body", http.MethodGet, nil, false, true, 202, "202 Accepted For Real", []byte("echo:")},
		{"rendezvous big request", http.MethodPost, big, false, false, 202, "202 Accepted For Real", append([]byte("echo:"), big...)},
		{"rendezvous chunked request", http.MethodPost, small, true, false, 202, "202 Accepted For Real", append([]byte("echo:"), small...)},
		{"inline request big response", http.MethodPut, small, false, true, 201, "201 Made It", big},
		{"rendezvous both ways", http.MethodPut, big, false, false, 201, "201 Made It", big},
		{"no content", http.MethodDelete, nil, false, true, 204, "204 Gone Now", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.HTTPURL(relay.URLOptions{Suffix: "a/b", Query: nil})
			u.RawQuery = "x=1&sb-hc-token=" + url.QueryEscape(tok) + "&sb-hc-bare"
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length: chunked
				}
			}
			req, _ := http.NewRequestWithContext(ctxT(t), tt.method, u.String(), body)
			req.Header.Set("X-Custom", "1")
			req.Header.Set(relay.HeaderAuthorization, tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			g := wait(t, seen)
			if g.inline != tt.wantInline {
				t.Errorf("inline = %v, want %v", g.inline, tt.wantInline)
			}
			if g.cmd.Method != tt.method || g.cmd.RequestTarget != "/hc1/a/b?x=1&sb-hc-bare" {
				t.Errorf("listener got %s %q", g.cmd.Method, g.cmd.RequestTarget)
			}
			if !bytes.Equal(g.body, tt.body) {
				t.Errorf("listener body: %d bytes, want %d", len(g.body), len(tt.body))
			}
			h := g.cmd.RequestHeaders
			if h["X-Custom"] != "1" || !strings.HasPrefix(h["Via"], "1.1 ") || h[relay.HeaderAuthorization] != "" {
				t.Errorf("request headers = %v", h)
			}
			if resp.StatusCode != tt.wantCode || resp.Status != tt.wantStatus {
				t.Errorf("status = %q, want %q", resp.Status, tt.wantStatus)
			}
			if !bytes.Equal(got, tt.wantBody) {
				t.Errorf("response body: %d bytes, want %d", len(got), len(tt.wantBody))
			}
			if !strings.Contains(resp.Header.Get("Via"), "1.1 ") {
				t.Errorf("response lacks Via: %v", resp.Header)
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t, func(c *emulator.Config) { c.RequestTimeout = 300 * time.Millisecond })
	c := s.Credentials("hc1")
	tok := token(t, c)
	do := func(t *testing.T, entity, tok string) *http.Response {
		t.Helper()
		cc := c
		cc.EntityPath = entity
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, cc.HTTPURL(relay.URLOptions{}).String(), nil)
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	t.Run("no listener", func(t *testing.T) {
		if resp := do(t, "hc1", tok); resp.StatusCode != 502 || resp.Header.Get("Via") != "" {
			t.Errorf("got %s via %q, want 502 without Via", resp.Status, resp.Header.Get("Via"))
		}
	})
	t.Run("unauthorized", func(t *testing.T) {
		if resp := do(t, "hc1", ""); resp.StatusCode != 401 {
			t.Errorf("got %s, want 401", resp.Status)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		cc := listen(t, s, "slow", relay.URLOptions{})
		go func() { // a listener that never answers (like hyco-ws)
			for {
				if _, _, err := cc.ReadMessage(); err != nil {
					return
				}
			}
		}()
		resp := do(t, "slow", relay.CreateToken("http://x/slow", c.KeyName, c.Key, time.Now().Add(time.Hour)))
		if resp.StatusCode != 504 || !strings.Contains(resp.Status, "did not respond in the required time") {
			t.Errorf("got %q, want 504", resp.Status)
		}
	})
	t.Run("allowed listeners mismatch", func(t *testing.T) {
		listen(t, s, "picky", relay.URLOptions{ID: "only-me"})
		cc := c
		cc.EntityPath = "picky"
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, cc.HTTPURL(relay.URLOptions{}).String(), nil)
		req.Header.Set(relay.HeaderAuthorization, token(t, cc))
		req.Header.Set("Microsoft-Relay-AllowedListeners", "someone-else")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(resp.Status, "AllowedListeners") {
			t.Errorf("got %q, want 404 naming AllowedListeners", resp.Status)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		resp, err := http.Get(fmt.Sprintf("http://%s/healthz", s.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("healthz = %s", resp.Status)
		}
	})
}
