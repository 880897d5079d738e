package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// scriptedRelay is a fake relay for the listener as the unit under test: it
// accepts control channels and hands each to script, which plays the
// relay's side. The emulator tests cover the real exchange.
func scriptedRelay(t *testing.T, script func(ctx context.Context, r *http.Request, ws *websocket.Conn), pings *atomic.Int32) relay.Credentials {
	t.Helper()
	srv := httptest.NewServer(scriptedHandler(script, pings))
	t.Cleanup(srv.Close)
	c := credsFor(t, srv.URL)
	c.KeyName = "listen"
	return c
}

// scriptedHandler is scriptedRelay's handler; pings (if not nil) counts
// the pings received.
func scriptedHandler(script func(ctx context.Context, r *http.Request, ws *websocket.Conn), pings *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OnPingReceived: func(context.Context, []byte) bool {
			if pings != nil {
				pings.Add(1)
			}
			return true
		}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		script(r.Context(), r, ws)
	})
}

func readJSON(t *testing.T, ctx context.Context, ws *websocket.Conn) *relay.ControlMessage {
	t.Helper()
	typ, data, err := ws.Read(ctx)
	if err != nil {
		t.Errorf("relay read: %v", err)
		return nil
	}
	if typ != websocket.MessageText {
		t.Errorf("got a %v message, want a JSON command", typ)
		return nil
	}
	m, err := relay.DecodeControlMessage(data)
	if err != nil {
		t.Errorf("listener sent %s: %v", data, err)
		return nil
	}
	return m
}

func TestListenerControlChannel(t *testing.T) {
	t.Parallel()
	type result struct {
		r    *http.Request
		resp *relay.ResponseCommand
		body string
	}
	done := make(chan result, 1)
	creds := scriptedRelay(t, func(ctx context.Context, r *http.Request, ws *websocket.Conn) {
		// Junk the listener must ignore, then an inline request.
		ws.Write(ctx, websocket.MessageBinary, []byte{0xff})
		ws.Write(ctx, websocket.MessageText, []byte("not json"))
		ws.Write(ctx, websocket.MessageText, []byte(`{"ping":{}}`))
		ws.Write(ctx, websocket.MessageText, []byte(`{"accept":null}`))
		ws.Write(ctx, websocket.MessageText, []byte(`{"renewToken":{"token":"x"}}`))
		req, _ := json.Marshal(relay.ControlMessage{Request: &relay.RequestCommand{
			Address: "ws://127.0.0.1:1/$hc/hc1?sb-hc-action=request&sb-hc-id=r1", ID: "r1", RequestTarget: "/hc1/x?q=1",
			Method: "POST", RequestHeaders: map[string]string{"Content-Type": "text/plain"}, Body: relay.Bool(true),
		}})
		ws.Write(ctx, websocket.MessageText, req)
		ws.Write(ctx, websocket.MessageBinary, []byte("hello"))
		m := readJSON(t, ctx, ws)
		_, body, err := ws.Read(ctx)
		if m == nil || m.Response == nil || err != nil {
			t.Errorf("got %+v, %v; want a response and its body", m, err)
			done <- result{r: r}
			return
		}
		done <- result{r, m.Response, string(body)}
		ws.Read(ctx) // until the listener closes
	}, nil)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: creds,
		HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
			w.Write([]byte(strings.ToUpper(string(b)) + " " + r.URL.RawQuery))
		}),
	}, testLogger(t, "listener"))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(t.Context()) }()
	var res result
	select {
	case res = <-done:
	case <-waitCtx(t).Done():
		t.Fatal("no response")
	}
	l.Close()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	q := res.r.URL.Query()
	if q.Get(relay.QueryAction) != "listen" || uuid.Validate(q.Get(relay.QueryID)) != nil || q.Has(relay.QueryToken) ||
		!strings.HasPrefix(res.r.Header.Get(relay.HeaderAuthorization), "SharedAccessSignature ") {
		t.Errorf("listen request %s %v", res.r.URL, res.r.Header)
	}
	if res.resp == nil || res.resp.RequestID != "r1" || res.resp.StatusCode != 200 || res.resp.StatusDescription != "OK" ||
		!res.resp.Body || res.resp.ResponseHeaders["Content-Type"] != "text/plain" || res.body != "HELLO q=1" {
		t.Errorf("got response %+v body %q", res.resp, res.body)
	}
}

func TestListenerRenewsTokenAndPings(t *testing.T) {
	t.Parallel()
	// A fake clock: the renewal (after 1 s) and the pings (every 50 ms,
	// each answered within the interval or the channel drops) do not
	// depend on the machine's load.
	synctest.Test(t, func(t *testing.T) {
		var pings atomic.Int32
		renewed := make(chan *relay.Token, 1)
		var first atomic.Pointer[relay.Token]
		client := serveMem(t, scriptedHandler(func(ctx context.Context, r *http.Request, ws *websocket.Conn) {
			tk, err := relay.ParseToken(r.Header.Get(relay.HeaderAuthorization))
			if err != nil {
				t.Error(err)
				return
			}
			first.Store(tk)
			m := readJSON(t, ctx, ws) // pings are answered while reading
			if m == nil || m.RenewToken == nil {
				t.Errorf("got %+v, want renewToken", m)
				return
			}
			tk2, err := relay.ParseToken(m.RenewToken.Token)
			if err != nil {
				t.Error(err)
				return
			}
			renewed <- tk2
			for { // later renewals and pings, until the listener closes
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}, &pings))
		creds := relay.Credentials{Host: memHost, EntityPath: "hc1", KeyName: "listen", Key: testKey, Insecure: true}
		l, err := relay.NewListener(relay.ListenerConfig{Credentials: creds, TokenTTL: 3 * time.Second, RenewBefore: 2 * time.Second,
			PingInterval: 50 * time.Millisecond, ConnHandler: echo, HTTPClient: client}, testLogger(t, "listener"))
		if err != nil {
			t.Fatal(err)
		}
		runErr := make(chan error, 1)
		go func() { runErr <- l.Run(t.Context()) }()
		tk := <-renewed
		if f := first.Load(); !tk.Expiry.After(f.Expiry) || tk.KeyName != "listen" || !tk.CheckSignature(testKey) {
			t.Errorf("renewed token %v (first %v)", tk, f)
		}
		time.Sleep(time.Second) // fake time: 20 ping intervals
		if n := pings.Load(); n < 3 {
			t.Errorf("%d pings in 1 s at a 50 ms interval, want ≥ 3", n)
		}
		if n := l.Sessions(); n != 1 {
			t.Errorf("%d sessions, want 1 (the channel was dropped)", n)
		}
		l.Close()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestListenerRetriesAfterFirstSuccess(t *testing.T) {
	t.Parallel()
	// The relay accepts once, drops the channel, then answers 401 twice
	// and accepts again: a listener that has been connected keeps trying.
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 2, 3:
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if n.Load() == 1 {
			ws.CloseNow()
			return
		}
		defer ws.CloseNow()
		ws.Read(r.Context())
	}))
	t.Cleanup(srv.Close)
	creds := credsFor(t, srv.URL)
	l, err := relay.NewListener(relay.ListenerConfig{Credentials: creds, ConnHandler: echo, Backoff: []time.Duration{0, time.Millisecond}}, testLogger(t, "listener"))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(t.Context()) }()
	waitFor(t, "four attempts and a connected listener", func() bool {
		select {
		case err := <-runErr:
			t.Fatalf("Run returned %v", err)
		default:
		}
		return n.Load() >= 4 && l.Connected()
	})
	l.Close()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := l.Run(t.Context()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestNewListenerValidates(t *testing.T) {
	t.Parallel()
	good := relay.Credentials{Host: "ns", EntityPath: "hc", KeyName: "k", Key: testKey}
	tests := []struct {
		name string
		cfg  relay.ListenerConfig
		want error
	}{
		{"no credentials", relay.ListenerConfig{}, relay.ErrInvalidCredentials},
		{"no key", relay.ListenerConfig{Credentials: relay.Credentials{Host: "ns", EntityPath: "hc", KeyName: "k"}}, relay.ErrInvalidCredentials},
		{"tiny ttl", relay.ListenerConfig{Credentials: good, TokenTTL: time.Second}, nil},
	}
	for _, tt := range tests {
		_, err := relay.NewListener(tt.cfg, nil)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || strings.Contains(err.Error(), testKey) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	l, err := relay.NewListener(relay.ListenerConfig{Credentials: good}, nil)
	if err != nil || l.Connected() {
		t.Fatalf("got %v, %v", l, err)
	}
	l.Close()
	if err := l.WaitConnected(t.Context()); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("WaitConnected after Close: %v", err)
	}
	if err := l.Run(t.Context()); err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestListenerConcurrentRequestsKeepTheirOwnResponses sends many requests
// at once through the emulator: each must get its own status, headers and
// body, however the listener reuses its goroutines and response buffers.
func TestListenerConcurrentRequestsKeepTheirOwnResponses(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	runListener(t, emu, "hc1", relay.ListenerConfig{HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n, _ := strconv.Atoi(r.Header.Get("X-N"))
		w.Header().Set("X-N", strconv.Itoa(n))
		if n%2 == 0 {
			w.Header().Set("X-Even", "yes")
			w.WriteHeader(http.StatusAccepted)
		}
		w.Write(bytes.Repeat(body, n%3)) // empty for every third
	})})
	s := &relay.HTTPSender{Credentials: emu.Credentials("hc1")}
	ctx := waitCtx(t)
	var wg sync.WaitGroup
	for n := range 200 {
		wg.Go(func() {
			body := []byte(fmt.Sprintf("request %d;", n))
			resp, err := s.Do(ctx, http.MethodPost, "", nil, http.Header{"X-N": {strconv.Itoa(n)}}, bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			wantStatus, wantEven := http.StatusOK, ""
			if n%2 == 0 {
				wantStatus, wantEven = http.StatusAccepted, "yes"
			}
			if err != nil || resp.StatusCode != wantStatus || resp.Header.Get("X-N") != strconv.Itoa(n) ||
				resp.Header.Get("X-Even") != wantEven || !bytes.Equal(got, bytes.Repeat(body, n%3)) {
				t.Errorf("request %d: got %d %v %q (%v)", n, resp.StatusCode, resp.Header, got, err)
			}
		})
	}
	wg.Wait()
}
