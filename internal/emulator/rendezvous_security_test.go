package emulator_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// rendezvousID is a rendezvous id: the sender's id, "_G" and 128 random
// bits in hex.
var rendezvousID = regexp.MustCompile(`^abc123_G[0-9a-f]{32}$`)

// TestAcceptRendezvousCannotBeGuessedOrReplayed: an unauthenticated client
// that knows the sender's sb-hc-id cannot take over its connection by
// guessing the accept address, and the address works once (issue 12,
// item 5).
func TestAcceptRendezvousCannotBeGuessedOrReplayed(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	cc := listen(t, s, "hc1", relay.URLOptions{})
	c := s.Credentials("hc1")
	u := c.WebSocketURL(relay.ActionConnect, relay.URLOptions{ID: "abc123"})
	sender := connectAsync(t, dialer(nil), u.String(), token(t, c), nil)
	acc := readAccept(t, cc)
	if !rendezvousID.MatchString(acc.ID) {
		t.Fatalf("accept id %q, want abc123_G + 32 hex digits", acc.ID)
	}

	// The sender is pending: guess its address the way the old counter
	// ids ("abc123_G11") were found.
	guess, _ := url.Parse(acc.Address)
	for _, id := range guesses("abc123") {
		q := guess.Query()
		q.Set(relay.QueryID, id)
		guess.RawQuery = q.Encode()
		ws, resp, err := dialWS(t, dialer(nil), guess.String(), "", nil)
		if err == nil {
			ws.Close()
			t.Fatalf("guessed accept id %q took over the sender", id)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("guess %q: %v (%s), want 403", id, err, status(resp))
		}
	}

	lws := acceptAddr(t, dialer(nil), acc.Address, nil)
	sr := wait(t, sender)
	if sr.err != nil {
		t.Fatalf("sender: %v (%s)", sr.err, status(sr.resp))
	}
	defer sr.ws.Close()
	if err := sr.ws.WriteMessage(websocket.TextMessage, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	lws.SetReadDeadline(time.Now().Add(testTimeout))
	if _, got, err := lws.ReadMessage(); err != nil || string(got) != "secret" {
		t.Fatalf("listener read %q, %v", got, err)
	}

	_, resp, err := dialWS(t, dialer(nil), acc.Address, "", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden || !hasReason(resp, "URL not valid") {
		t.Fatalf("replayed accept: %v (%s), want 403 URL not valid", err, status(resp))
	}
}

// guesses are the ids an attacker who knows the sender's id would try.
func guesses(base string) []string {
	var ids []string
	for n := range 64 {
		ids = append(ids, fmt.Sprintf("%s_G%d", base, n))
	}
	return append(ids, base, base+"_G", base+"_G"+strings.Repeat("0", 32))
}

// TestRequestRendezvousBoundToItsChannel: in HTTP request mode, a response
// sent on another listener's control channel for a request it was not
// offered is dropped, and the request rendezvous address works once.
func TestRequestRendezvousBoundToItsChannel(t *testing.T) {
	t.Parallel()
	s := emulatortest.Start(t)
	owner := listen(t, s, "hc1", relay.URLOptions{})
	other := listen(t, s, "hc2", relay.URLOptions{})
	c := s.Credentials("hc1")

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, c.HTTPURL(relay.URLOptions{}).String(), strings.NewReader("hi"))
		req.Header.Set(relay.HeaderAuthorization, token(t, c))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	cmd := readRequest(t, owner)

	// The other listener answers the request id on its own channel, then
	// sends an invalid renewToken: its channel is closed once the forged
	// response has been handled, so the drop is over when the close is read.
	writeControl(t, other, &relay.ControlMessage{Response: &relay.ResponseCommand{RequestID: cmd.ID, StatusCode: 418, StatusDescription: "Forged"}}, nil)
	writeControl(t, other, &relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: "not a token"}}, nil)
	other.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		if _, _, err := other.ReadMessage(); err != nil {
			break
		}
	}
	other.Close()

	rv := acceptAddr(t, dialer(nil), cmd.Address, nil)
	if _, resp, err := dialWS(t, dialer(nil), cmd.Address, "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("replayed request rendezvous: %v (%s), want 403", err, status(resp))
	}
	writeControl(t, rv, &relay.ControlMessage{Response: &relay.ResponseCommand{RequestID: cmd.ID, StatusCode: 200, Body: true}}, []byte("real"))
	r := wait(t, done)
	if r.err != nil || r.code != 200 || r.body != "real" {
		t.Fatalf("sender got %d %q %v, want 200 from the listener it was offered to", r.code, r.body, r.err)
	}
}

// readRequest reads one command from a control channel and requires an
// inline request (its body, if any, is read and dropped).
func readRequest(t *testing.T, cc *websocket.Conn) *relay.RequestCommand {
	t.Helper()
	cc.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		mt, data, err := cc.ReadMessage()
		if err != nil {
			t.Fatalf("read control channel: %v", err)
		}
		if mt != websocket.TextMessage {
			continue
		}
		m, err := relay.DecodeControlMessage(data)
		if err != nil || m.Request == nil {
			t.Fatalf("want request, got %s (%v)", data, err)
		}
		if m.Request.HasBody() {
			cc.ReadMessage()
		}
		return m.Request
	}
}

func writeControl(t *testing.T, ws *websocket.Conn, m *relay.ControlMessage, body []byte) {
	t.Helper()
	data, err := relay.EncodeControlMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, data); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		if err := ws.WriteMessage(websocket.BinaryMessage, body); err != nil {
			t.Fatal(err)
		}
	}
}
