package emulator_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/relay"
)

const testTimeout = 10 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// token mints a token for c valid for an hour.
func token(t testing.TB, c relay.Credentials) string {
	t.Helper()
	tok, _, err := c.Token(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialer returns a gorilla dialer; tlsConf may be nil.
func dialer(tlsConf *tls.Config) *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: testTimeout, TLSClientConfig: tlsConf}
}

// dialWS dials u with the token in the ServiceBusAuthorization header (if
// non-empty) and extra headers.
func dialWS(t testing.TB, d *websocket.Dialer, u string, tok string, extra http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	for k, v := range extra {
		h[k] = v
	}
	if tok != "" {
		h.Set(relay.HeaderAuthorization, tok)
	}
	ws, resp, err := d.DialContext(ctxT(t), u, h)
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// listen opens a control channel for entity using c's key.
func listen(t testing.TB, s *emulator.Server, entity string, opts relay.URLOptions) *websocket.Conn {
	t.Helper()
	c := s.Credentials(entity)
	ws, resp, err := dialWS(t, dialer(nil), c.WebSocketURL(relay.ActionListen, opts).String(), token(t, c), nil)
	if err != nil {
		t.Fatalf("listen: %v (%s)", err, status(resp))
	}
	return ws
}

func status(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status
}

// readAccept reads one command from a control channel and requires accept.
func readAccept(t testing.TB, cc *websocket.Conn) *relay.AcceptCommand {
	t.Helper()
	cc.SetReadDeadline(time.Now().Add(testTimeout))
	mt, data, err := cc.ReadMessage()
	if err != nil {
		t.Fatalf("read control channel: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("control message type %d, want text", mt)
	}
	m, err := relay.DecodeControlMessage(data)
	if err != nil || m.Accept == nil {
		t.Fatalf("want accept, got %s (%v)", data, err)
	}
	// The raw JSON must carry remoteEndpoint (Java requires it).
	var raw map[string]map[string]json.RawMessage
	json.Unmarshal(data, &raw)
	if _, ok := raw["accept"]["remoteEndpoint"]; !ok {
		t.Errorf("accept lacks remoteEndpoint: %s", data)
	}
	return m.Accept
}

// connectResult is the outcome of an asynchronous sender dial.
type connectResult struct {
	ws   *websocket.Conn
	resp *http.Response
	err  error
}

// connectAsync dials a sender in the background (the emulator holds the
// upgrade until the listener answers).
func connectAsync(t testing.TB, d *websocket.Dialer, u, tok string, h http.Header) <-chan connectResult {
	ch := make(chan connectResult, 1)
	go func() {
		hh := http.Header{}
		for k, v := range h {
			hh[k] = v
		}
		if tok != "" {
			hh.Set(relay.HeaderAuthorization, tok)
		}
		ws, resp, err := d.Dial(u, hh)
		ch <- connectResult{ws, resp, err}
	}()
	return ch
}

func wait[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// acceptAddr dials an accept address as the listener.
func acceptAddr(t testing.TB, d *websocket.Dialer, addr string, h http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := dialWS(t, d, addr, "", h)
	if err != nil {
		t.Fatalf("accept rendezvous: %v (%s)", err, status(resp))
	}
	return ws
}

func hasReason(resp *http.Response, want string) bool {
	return resp != nil && strings.Contains(resp.Status, want)
}
