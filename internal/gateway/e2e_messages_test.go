package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/config"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestE2EMessagesArriveByteExact(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.startListener(nil)
	e.startGateway(func(c *config.Gateway) { c.AdminAddr = "127.0.0.1:0" })
	e.waitReady()

	mib := 1 << 20
	text := bytes.Repeat([]byte("héllo wörld "), mib/14+1)
	for len(text) > mib || !isUTF8(text) {
		text = text[:len(text)-1]
	}
	bin := make([]byte, mib)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	jsonMsg := `{"nested": [1, 2.0, "x"] , "s":"` + strings.Repeat("z", 1000) + `"}`
	bigJSON := []byte(`{"id":"big-1","message":"` + strings.Repeat("j", mib-len(`{"id":"big-1","message":""}`)) + `"}`)
	tests := []struct {
		name, ct  string
		body      []byte
		wantType  relay.MessageType
		wantFrame func(id string) []byte
	}{
		{"small text", "text/plain", []byte("hi ✓"), relay.MessageText, nil},
		{"1 MiB text", "text/plain; charset=utf-8", text, relay.MessageText, nil},
		{"1 MiB binary", "application/octet-stream", bin, relay.MessageBinary, nil},
		{"json", "application/json", []byte(`{"message": ` + jsonMsg + `, "id":"j-1"}`), relay.MessageText,
			func(string) []byte { return []byte(`{"id":"j-1","message":` + jsonMsg + `}`) }},
		{"1 MiB json", "application/json", bigJSON, relay.MessageText,
			func(string) []byte {
				return []byte(`{"id":"big-1","message":"` + strings.Repeat("j", mib-len(`{"id":"big-1","message":""}`)) + `"}`)
			}},
	}
	for _, tt := range tests {
		resp, b := e.do("POST", "/messages", tt.ct, tt.body)
		if resp.StatusCode != 202 {
			t.Fatalf("%s: status %d: %s", tt.name, resp.StatusCode, b)
		}
		var sent struct{ ID, Status string }
		json.Unmarshal(b, &sent)
		want := tt.body
		if tt.wantFrame != nil {
			want = tt.wantFrame(sent.ID)
		}
		f := e.next()
		if f.typ != tt.wantType || !bytes.Equal(f.data, want) {
			t.Errorf("%s: listener got %s frame of %d bytes, want %s of %d (equal %v)", tt.name, f.typ, len(f.data), tt.wantType, len(want), bytes.Equal(f.data, want))
		}
	}
	// Over the limit: 413, nothing relayed.
	resp, _ := e.do("POST", "/messages", "application/octet-stream", make([]byte, mib+1))
	if resp.StatusCode != 413 {
		t.Errorf("1 MiB + 1: status %d", resp.StatusCode)
	}
	for _, bad := range []struct{ ct, body string }{{"application/json", `{"message":null}`}, {"application/xml", "<a/>"}, {"text/plain", ""}} {
		resp, _ := e.do("POST", "/messages", bad.ct, []byte(bad.body))
		if resp.StatusCode != 400 && resp.StatusCode != 415 {
			t.Errorf("%s %q: status %d", bad.ct, bad.body, resp.StatusCode)
		}
	}
	select {
	case f := <-e.recv:
		t.Errorf("a rejected request was relayed: %d bytes", len(f.data))
	default:
	}
	// The operational endpoints, through the real server.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		if resp, _ := e.do("GET", p, "", nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	m := getAdmin(t, e.gw, "/metrics", 200)
	for _, want := range []string{`relaygate_pool_connections{state="ready"} 2`, `relaygate_pool_messages_sent_total 5`, `relaygate_http_requests_total{method="POST",route="/messages",status="202"} 5`, `relaygate_pool_dials_total{result="ok"} 2`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func isUTF8(b []byte) bool { return strings.ToValidUTF8(string(b), "\x00") == string(b) }

func TestE2EDeliveryRequest(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.startListener(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch string(b) {
		case "fail":
			http.Error(w, "listener says no", http.StatusBadGateway)
		case "stall":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"echo":%q,"ct":%q,"id":%q}`, b, r.Header.Get("Content-Type"), r.Header.Get("X-Message-Id"))
		}
	}))
	e.startGateway(func(c *config.Gateway) { c.DeliveryTimeout = 2 * time.Second }) // generous under -race on 2 cores; the stall case waits it out
	e.waitReady()

	type delivered struct {
		ID, Status string
		Listener   struct {
			Status  int
			Headers map[string]string
			Body    string
		}
	}
	resp, b := e.do("POST", "/messages?delivery=request", "text/plain", []byte("ping"))
	var d delivered
	json.Unmarshal(b, &d)
	if resp.StatusCode != 200 || d.Status != "delivered" || d.Listener.Status != 201 ||
		d.Listener.Body != fmt.Sprintf(`{"echo":"ping","ct":"text/plain; charset=utf-8","id":%q}`, d.ID) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	// A listener's 502 is the listener's answer, not a gateway error.
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("fail"))
	d = delivered{}
	json.Unmarshal(b, &d)
	if resp.StatusCode != 200 || d.Listener.Status != 502 || !strings.Contains(d.Listener.Body, "listener says no") {
		t.Fatalf("listener error: got %d %s", resp.StatusCode, b)
	}
	// A listener too slow for the gateway's deadline: 504.
	resp, b = e.do("POST", "/messages?delivery=request", "text/plain", []byte("stall"))
	if resp.StatusCode != 504 || problemCode(b) != "timeout" {
		t.Fatalf("stalled listener: got %d %s", resp.StatusCode, b)
	}
}
