package forward_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	gws "github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/forward"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestRepliesOverWebSocket runs a sender, the emulator, a relay.Listener
// with a forward.Handler and a local service over real sockets: 2xx bodies
// come back on the sender's WebSocket (text or binary by Content-Type), an
// empty 2xx sends nothing, failures come back as an error frame, and a
// sender that half-closes still gets the reply to its last message.
func TestRepliesOverWebSocket(t *testing.T) {
	t.Parallel()
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"answer":42}`))
		case "bin":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte("raw"))
		case "empty":
			w.WriteHeader(http.StatusNoContent)
		case "fail":
			http.Error(w, "internal detail", http.StatusInternalServerError)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(append([]byte("echo:"), body...))
		}
	}))
	t.Cleanup(svc.Close)
	target, _ := url.Parse(svc.URL + "/hook")

	emu := emulatortest.Start(t)
	log := testlog.Logger(t)
	h, err := forward.New(forward.Config{Target: target}, io.Discard, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials("hc1"),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) { h.ServeConn(ctx, c) },
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	t.Cleanup(func() { l.Close(); <-done })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	ws, err := relay.Dial(ctx, emu.Credentials("hc1"), relay.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for _, tt := range []struct {
		send     string
		wantType websocket.MessageType
		want     string
	}{
		{"json", websocket.MessageText, `{"answer":42}`},
		{"bin", websocket.MessageBinary, "raw"},
		{"empty", 0, ""}, // nothing: the next reply is the next message's
		{"hello", websocket.MessageText, "echo:hello"},
		{"fail", websocket.MessageText, `{"error":{"status":500,"code":"local_error","detail":"the local service answered 500"}}`},
	} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(tt.send)); err != nil {
			t.Fatal(err)
		}
		if tt.wantType == 0 {
			continue
		}
		typ, data, err := ws.Read(ctx)
		if err != nil || typ != tt.wantType || string(data) != tt.want {
			t.Fatalf("%s: got %v %q %v, want %v %q", tt.send, typ, data, err, tt.wantType, tt.want)
		}
		if tt.send == "fail" && !json.Valid(data) {
			t.Fatalf("error frame is not JSON: %q", data)
		}
	}

	// Half-close: the sender shuts down its side right after its last
	// message and still reads the reply, then the listener's close.
	creds := emu.Credentials("hc1")
	tok, _, err := creds.Token(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g, _, err := gws.DefaultDialer.DialContext(ctx, creds.WebSocketURL(relay.ActionConnect, relay.URLOptions{}).String(),
		http.Header{relay.HeaderAuthorization: {tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.SetCloseHandler(func(int, string) error { return nil })
	g.WriteMessage(gws.TextMessage, []byte("last"))
	g.WriteControl(gws.CloseMessage, gws.FormatCloseMessage(gws.CloseNormalClosure, "Shutdown"), time.Now().Add(5*time.Second))
	dl, _ := ctx.Deadline()
	g.SetReadDeadline(dl)
	if _, data, err := g.ReadMessage(); err != nil || string(data) != "echo:last" {
		t.Fatalf("after half-close: got %q %v, want echo:last", data, err)
	}
	if _, _, err := g.ReadMessage(); !gws.IsCloseError(err, gws.CloseNormalClosure) {
		t.Fatalf("got %v, want the listener's close 1000", err)
	}
}
