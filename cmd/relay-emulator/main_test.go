package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// lineWriter hands each written line to a channel and keeps everything.
type lineWriter struct {
	mu    sync.Mutex
	all   strings.Builder
	part  string
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 256)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		select {
		case w.lines <- w.part[:i]:
		default:
		}
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func nextLine(t *testing.T, w *lineWriter, match *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-w.lines:
			if m := match.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %s", match)
		}
	}
}

func TestRunPrintsDevConnectionStringThatWorks(t *testing.T) {
	testlog.Setenv(t, nil, "RELAY_EMULATOR")
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := newLineWriter(), newLineWriter()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--log-level", "debug", "--dev-entity", "demo"}, stdout, stderr)
	}()
	cs := nextLine(t, stdout, regexp.MustCompile(`^Endpoint=sb://127\.0\.0\.1:\d+/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=[^;]+;EntityPath=demo;UseDevelopmentEmulator=true$`))[0]
	metricsAddr := nextLine(t, stderr, regexp.MustCompile(`msg="metrics listening" addr=(\S+)`))[1]
	creds, err := relay.ParseConnectionString(cs)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := creds.Token(time.Now(), time.Hour)
	h := http.Header{relay.HeaderAuthorization: {tok}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}

	cc, resp, err := d.Dial(creds.WebSocketURL(relay.ActionListen, relay.URLOptions{}).String(), h)
	if err != nil {
		t.Fatalf("listen: %v (%v)", err, resp)
	}
	defer cc.Close()
	type res struct {
		ws  *websocket.Conn
		err error
	}
	sc := make(chan res, 1)
	go func() {
		ws, _, err := d.Dial(creds.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(), h)
		sc <- res{ws, err}
	}()
	_, data, err := cc.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	m, err := relay.DecodeControlMessage(data)
	if err != nil || m.Accept == nil {
		t.Fatalf("accept: %s %v", data, err)
	}
	lws, _, err := d.Dial(m.Accept.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lws.Close()
	r := <-sc
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.ws.WriteMessage(websocket.TextMessage, []byte("hello"))
	if _, got, err := lws.ReadMessage(); err != nil || string(got) != "hello" {
		t.Fatalf("relayed %q %v", got, err)
	}
	r.ws.Close()

	mr, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	for _, want := range []string{"relay_emulator_listeners 1", "relay_emulator_messages_relayed_total 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	hr, err := http.Get("http://" + creds.Host + "/healthz")
	if err != nil || hr.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", hr, err)
	}
	hr.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if strings.Contains(stderr.String(), creds.Key) {
		t.Error("the key appears in the log")
	}
	if n := strings.Count(stdout.String(), creds.Key); n != 1 {
		t.Errorf("the key appears %d times on stdout, want once", n)
	}
	sc2 := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc2.Scan() {
		if strings.Contains(sc2.Text(), "SharedAccessSignature") {
			t.Errorf("log line holds a token: %s", sc2.Text())
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	testlog.Setenv(t, map[string]string{"RELAY_EMULATOR_RULES": "x=SECRETKEY99:Nope"}, "RELAY_EMULATOR")
	err := run(context.Background(), nil, io.Discard, io.Discard)
	if err == nil || strings.Contains(err.Error(), "SECRETKEY99") {
		t.Fatalf("run = %v, want an error without the key", err)
	}
}
