package main

// These tests run the whole command (run with its environment and flags)
// against the in-process emulator over real sockets on 127.0.0.1. They set
// LISTENER_* variables with t.Setenv, so they do not run in parallel.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

const entity = "hc"

// connString is the connection string of c for UseDevelopmentEmulator.
func connString(c relay.Credentials) string {
	return fmt.Sprintf("Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s;UseDevelopmentEmulator=true",
		c.Host, c.KeyName, c.Key, c.EntityPath)
}

// lineBuffer collects the command's output and wakes waiters on every
// write (Wrote).
type lineBuffer struct{ testlog.Buffer }

// waitLines waits until at least n complete lines were written and returns
// them decoded.
func (b *lineBuffer) waitLines(t *testing.T, n int) []forward.Line {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		var lines []forward.Line
		sc := bufio.NewScanner(strings.NewReader(b.String()))
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			var l forward.Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
			}
			lines = append(lines, l)
		}
		if len(lines) >= n {
			return lines
		}
		select {
		case <-b.Wrote():
		case <-deadline:
			t.Fatalf("got %d lines on stdout, want %d:\n%s", len(lines), n, b.String())
		}
	}
}

// started is a running listener command.
type started struct {
	stdout, stderr *lineBuffer
	cancel         context.CancelFunc
	done           chan error
}

// start runs the command with env and args; it is stopped (and must return
// nil) at cleanup unless stop was called.
func start(t *testing.T, env map[string]string, args ...string) *started {
	t.Helper()
	testlog.Setenv(t, env, "LISTENER")
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{stdout: &lineBuffer{}, stderr: &lineBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, args, s.stdout, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("run did not return after cancel")
		}
	})
	return s
}

// wait returns run's error, failing the test if it does not return.
func (s *started) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return; stderr:\n%s", s.stderr.String())
		return nil
	}
}

// stop cancels run (SIGINT in main) and checks it returns nil.
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := s.wait(t); err != nil {
		t.Errorf("run after cancel: got %v, want nil", err)
	}
}

// waitListening polls the emulator until the listener's control channel is
// connected, failing at once if run returns first.
func waitListening(t *testing.T, em *emulator.Server, s *started) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener stderr:\n%s", s.stderr.String())
		}
	})
	testlog.WaitFor(t, "the listener's control channel", func() bool {
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			t.Fatalf("run returned before listening: %v", err)
		default:
		}
		return em.ListenerCount(entity) > 0
	})
}

// noSecret fails if the key appears in what the command wrote.
func noSecret(t *testing.T, key string, outs ...*lineBuffer) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o.String(), key) {
			t.Errorf("output contains the key:\n%s", o.String())
		}
	}
}

// relayHTTP sends one HTTP request through the emulator's HTTP request mode.
func relayHTTP(t *testing.T, c relay.Credentials, method, suffix string, body []byte) (*http.Response, []byte) {
	t.Helper()
	tok, _, err := c.Token(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u := c.HTTPURL(relay.URLOptions{Suffix: suffix})
	req, err := http.NewRequestWithContext(t.Context(), method, u.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(relay.HeaderAuthorization, tok)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, got
}

func TestPrintMode(t *testing.T) {
	em := emulatortest.Start(t)
	creds := em.ListenerCredentials(entity)
	s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(creds), "LISTENER_LOG_LEVEL": "debug"})
	waitListening(t, em, s)

	ws, err := relay.Dial(t.Context(), em.Credentials(entity), relay.DialOptions{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	text := `{"message":"hello from the gateway","id":"m1"}`
	bin := []byte{0, 1, 2, 0xfe, 0xff}
	if err := ws.Write(t.Context(), websocket.MessageText, []byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(t.Context(), websocket.MessageBinary, bin); err != nil {
		t.Fatal(err)
	}
	lines := s.stdout.waitLines(t, 2)
	if l := lines[0]; l.Type != "text" || l.Text == nil || *l.Text != text || l.Connection == "" || l.Time.IsZero() {
		t.Errorf("line 0: got %+v, want text %q", l, text)
	}
	if l := lines[1]; l.Type != "binary" || l.Base64 == nil || !bytes.Equal(*l.Base64, bin) || l.Connection != lines[0].Connection {
		t.Errorf("line 1: got %+v, want binary %x on the same connection", l, bin)
	}
	// The raw line has the documented shape, for jq users.
	first, _, _ := strings.Cut(s.stdout.String(), "\n")
	var raw map[string]any
	if err := json.Unmarshal([]byte(first), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "connection", "type", "text"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("line %s has no %q", first, k)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// HTTP request mode: printed and answered with a receipt.
	resp, body := relayHTTP(t, em.Credentials(entity), http.MethodPost, "orders", []byte(`{"n":1}`))
	var rc forward.Receipt
	if err := json.Unmarshal(body, &rc); err != nil || resp.StatusCode != http.StatusOK || rc.Status != "received" || rc.Bytes != 7 {
		t.Errorf("HTTP request: got %d %s (%v), want 200 with a receipt", resp.StatusCode, body, err)
	}
	lines = s.stdout.waitLines(t, 3)
	if l := lines[2]; l.Type != "http" || l.Method != http.MethodPost || l.Text == nil || *l.Text != `{"n":1}` {
		t.Errorf("HTTP line: got %+v", l)
	}

	s.stop(t)
	noSecret(t, creds.Key, s.stdout, s.stderr)
	if strings.Contains(s.stdout.String(), "level=") {
		t.Errorf("logs went to stdout:\n%s", s.stdout.String())
	}
	if !strings.Contains(s.stderr.String(), "listener starting") {
		t.Errorf("no logs on stderr:\n%s", s.stderr.String())
	}
}

func TestForwardMode(t *testing.T) {
	var mu sync.Mutex
	var posted []string
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Seen-Path", r.URL.Path)
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		case r.URL.Path == "/api" && r.Header.Get(forward.HeaderConnection) != "":
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			posted = append(posted, r.Header.Get(forward.HeaderMessageType)+":"+string(body))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such order"}`)
		}
	}))
	t.Cleanup(svc.Close)

	em := emulatortest.Start(t)
	creds := em.ListenerCredentials(entity)
	s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(creds)}, "--forward", svc.URL+"/api")
	waitListening(t, em, s)
	sender := em.Credentials(entity)

	// A 200 kB body goes through the rendezvous both ways.
	big := bytes.Repeat([]byte("relaygate "), 20_000)
	resp, body := relayHTTP(t, sender, http.MethodPut, "echo", big)
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(body, big) || resp.Header.Get("X-Seen-Path") != "/api/echo" {
		t.Errorf("echo: got %d, %d bytes, X-Seen-Path=%q; want 201, %d bytes, /api/echo",
			resp.StatusCode, len(body), resp.Header.Get("X-Seen-Path"), len(big))
	}

	// The service's 404 is relayed back as is.
	resp, body = relayHTTP(t, sender, http.MethodGet, "orders/42", nil)
	if resp.StatusCode != http.StatusNotFound || string(body) != `{"error":"no such order"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("404: got %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}

	// WebSocket messages are printed and POSTed, in order.
	ws, err := relay.Dial(t.Context(), sender, relay.DialOptions{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	for _, m := range []string{"first", "second"} {
		if err := ws.Write(t.Context(), websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	s.stdout.waitLines(t, 2)
	testlog.WaitFor(t, "the service to get text:first,text:second", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(posted, ",") == "text:first,text:second"
	})
	s.stop(t)
	noSecret(t, creds.Key, s.stdout, s.stderr)
}

func TestRefusedListenerExits(t *testing.T) {
	sendOnlyKey := emulatortest.RandomKey()
	tests := []struct {
		name   string
		opts   []func(*emulator.Config)
		creds  func(em *emulator.Server) relay.Credentials
		target error
		want   string
	}{
		{
			name: "bad key",
			creds: func(em *emulator.Server) relay.Credentials {
				c := em.ListenerCredentials(entity)
				c.Key = emulatortest.RandomKey()
				return c
			},
			target: relay.ErrUnauthorized, want: "401",
		},
		{
			name: "rule without Listen",
			opts: []func(*emulator.Config){func(c *emulator.Config) {
				c.Rules = append(c.Rules, emulator.Rule{Name: "sender", Key: sendOnlyKey, Rights: emulator.RightSend})
			}},
			creds: func(em *emulator.Server) relay.Credentials {
				c := em.ListenerCredentials(entity)
				c.KeyName, c.Key = "sender", sendOnlyKey
				return c
			},
			target: relay.ErrForbidden, want: "Listen right",
		},
		{
			name: "missing entity",
			opts: []func(*emulator.Config){func(c *emulator.Config) { c.AutoCreate = false }},
			creds: func(em *emulator.Server) relay.Credentials {
				return em.ListenerCredentials(entity)
			},
			target: relay.ErrEntityNotFound, want: `"hc" does not exist`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			em := emulatortest.Start(t, tt.opts...)
			c := tt.creds(em)
			s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(c)})
			err := s.wait(t)
			if !errors.Is(err, tt.target) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: got %v, want %v mentioning %q", err, tt.target, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), c.Key) {
				t.Errorf("error contains the key: %v", err)
			}
			noSecret(t, c.Key, s.stdout, s.stderr)
		})
	}
}

func TestHelpAndConfigErrors(t *testing.T) {
	s := start(t, nil, "-h")
	if err := s.wait(t); err != nil {
		t.Fatalf("-h: got %v, want nil", err)
	}
	for _, w := range []string{"-forward URL", "LISTENER_CONNECTION_STRING", "LISTENER_CONFIG_FILE", "LISTENER_FORWARD_TIMEOUT", "LISTENER_LOG_FORMAT"} {
		if !strings.Contains(s.stderr.String(), w) {
			t.Errorf("-h output does not mention %q:\n%s", w, s.stderr.String())
		}
	}

	s = start(t, nil)
	if err := s.wait(t); err == nil || !strings.Contains(err.Error(), "LISTENER_CONNECTION_STRING") {
		t.Errorf("no credentials: got %v, want an error naming LISTENER_CONNECTION_STRING", err)
	}

	key := base64.StdEncoding.EncodeToString([]byte("do-not-print-this-key"))
	cs := "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=" + key + ";EntityPath=hc;UseDevelopmentEmulator=true"
	s = start(t, map[string]string{"LISTENER_CONNECTION_STRING": cs}, "--forward", "localhost:3000")
	if err := s.wait(t); err == nil || !strings.Contains(err.Error(), "--forward") {
		t.Errorf("bad --forward: got %v, want an error naming --forward", err)
	}
	s = start(t, map[string]string{"LISTENER_CONNECTION_STRING": cs}, "stray")
	if err := s.wait(t); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("stray argument: got %v", err)
	}
	s = start(t, map[string]string{"LISTENER_CONNECTION_STRING": strings.Replace(cs, "EntityPath=hc", "EntityPath=", 1)})
	if err := s.wait(t); err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "EntityPath") {
		t.Errorf("bad connection string: got %v, want an error naming EntityPath and not the key", err)
	}
}

func TestReconnectsAfterRelayDrop(t *testing.T) {
	em := emulatortest.Start(t)
	s := start(t, map[string]string{"LISTENER_CONNECTION_STRING": connString(em.ListenerCredentials(entity))})
	waitListening(t, em, s)

	em.DropConnections() // every control channel and relayed connection, abruptly

	// The relay listener logs each control channel it opens: wait for the
	// second one.
	deadline := time.After(10 * time.Second)
	for strings.Count(s.stderr.String(), "control channel open") < 2 {
		select {
		case <-s.stderr.Wrote():
		case err := <-s.done:
			t.Fatalf("run returned after a drop: %v", err)
		case <-deadline:
			t.Fatalf("no reconnect; stderr:\n%s", s.stderr.String())
		}
	}

	// Still serving: a sender gets through. The emulator may not have
	// noticed the old control channel's death yet, so a dial can still be
	// routed to it and fail; retry until one succeeds.
	var ws *websocket.Conn
	var lastErr string
	testlog.WaitFor(t, "a dial after the reconnect", func() bool {
		var err error
		if ws, err = relay.Dial(t.Context(), em.Credentials(entity), relay.DialOptions{}); err != nil && err.Error() != lastErr {
			lastErr = err.Error()
			t.Logf("dial after reconnect: %v", err)
		}
		return err == nil
	})
	defer ws.CloseNow()
	if err := ws.Write(t.Context(), websocket.MessageText, []byte("after the drop")); err != nil {
		t.Fatal(err)
	}
	if l := s.stdout.waitLines(t, 1)[0]; l.Text == nil || *l.Text != "after the drop" {
		t.Errorf("got %+v", l)
	}
	select {
	case err := <-s.done:
		t.Fatalf("run returned after a drop: %v", err)
	default:
	}
	s.stop(t)
}
