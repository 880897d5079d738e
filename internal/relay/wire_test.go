package relay_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/relay"
)

func TestDecodeControlMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want relay.ControlMessage
	}{
		{"accept", `{"accept":{"address":"wss://r/$hc/hc1?sb-hc-action=accept&sb-hc-id=a_G1","id":"a_G1",
			"connectHeaders":{"Sec-WebSocket-Protocol":"p1, p2","Sec-WebSocket-Key":"k=="},"remoteEndpoint":{"address":"10.0.0.1","port":1234},"future":1}}`,
			relay.ControlMessage{Accept: &relay.AcceptCommand{Address: "wss://r/$hc/hc1?sb-hc-action=accept&sb-hc-id=a_G1", ID: "a_G1",
				ConnectHeaders: map[string]string{"Sec-WebSocket-Protocol": "p1, p2", "Sec-WebSocket-Key": "k=="},
				RemoteEndpoint: relay.RemoteEndpoint{Address: "10.0.0.1", Port: 1234}}}},
		{"inline request", `{"request":{"address":"wss://r/x","id":"r1","requestTarget":"/hc1/a?b=c","method":"POST",
			"remoteEndpoint":{"address":"::1","port":1},"requestHeaders":{"Content-Type":"text/plain"},"body":true}}`,
			relay.ControlMessage{Request: &relay.RequestCommand{Address: "wss://r/x", ID: "r1", RequestTarget: "/hc1/a?b=c", Method: "POST",
				RemoteEndpoint: &relay.RemoteEndpoint{Address: "::1", Port: 1}, RequestHeaders: map[string]string{"Content-Type": "text/plain"}, Body: relay.Bool(true)}}},
		{"address-only request", `{"request":{"address":"wss://r/x?sb-hc-action=request","id":"r2"}}`,
			relay.ControlMessage{Request: &relay.RequestCommand{Address: "wss://r/x?sb-hc-action=request", ID: "r2"}}},
		{"response number", `{"response":{"requestId":"r1","statusCode":201,"statusDescription":"Created","responseHeaders":{"A":"b"},"body":true}}`,
			relay.ControlMessage{Response: &relay.ResponseCommand{RequestID: "r1", StatusCode: 201, StatusDescription: "Created", ResponseHeaders: map[string]string{"A": "b"}, Body: true}}},
		{"response string status", `{"response":{"requestId":"r1","statusCode":"200"}}`,
			relay.ControlMessage{Response: &relay.ResponseCommand{RequestID: "r1", StatusCode: 200}}},
		{"renewToken", `{"renewToken":{"token":"SharedAccessSignature sr=a&sig=b&se=1&skn=k"}}`,
			relay.ControlMessage{RenewToken: &relay.RenewTokenCommand{Token: "SharedAccessSignature sr=a&sig=b&se=1&skn=k"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := relay.DecodeControlMessage([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
			// Encoding and decoding again gives the same message.
			enc, err := relay.EncodeControlMessage(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := relay.DecodeControlMessage(enc)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip: got %+v, %v", again, err)
			}
		})
	}
}

func TestDecodeControlMessageInlineForms(t *testing.T) {
	t.Parallel()
	m, err := relay.DecodeControlMessage([]byte(`{"request":{"address":"a","id":"1","method":"GET","body":false}}`))
	if err != nil || !m.Request.Inline() || m.Request.HasBody() {
		t.Fatalf("body:false: got %+v %v, want inline without body", m, err)
	}
	// hyco-https tells the forms apart by method, .NET by body; both must agree.
	m, err = relay.DecodeControlMessage([]byte(`{"request":{"address":"a","id":"1"}}`))
	if err != nil || m.Request.Inline() || m.Request.HasBody() {
		t.Fatalf("address-only: got %+v %v", m, err)
	}
}

func TestDecodeControlMessageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", ``, relay.ErrBadCommand},
		{"not json", `hello`, relay.ErrBadCommand},
		{"array", `[{"accept":{}}]`, relay.ErrBadCommand},
		{"null", `null`, relay.ErrBadCommand},
		{"no key", `{}`, relay.ErrBadCommand},
		{"two keys", `{"accept":{"address":"a","id":"b"},"renewToken":{"token":"t"}}`, relay.ErrBadCommand},
		{"command not an object", `{"accept":"wss://x"}`, relay.ErrBadCommand},
		{"command null", `{"accept":null}`, relay.ErrBadCommand},
		{"accept without id", `{"accept":{"address":"a"}}`, relay.ErrBadCommand},
		{"accept wrong type", `{"accept":{"address":"a","id":"b","connectHeaders":{"X":["1","2"]}}}`, relay.ErrBadCommand},
		{"request nothing", `{"request":{"id":"x"}}`, relay.ErrBadCommand},
		{"response without id", `{"response":{"statusCode":200}}`, relay.ErrBadCommand},
		{"response bad status", `{"response":{"requestId":"r","statusCode":"OK"}}`, relay.ErrBadCommand},
		{"response status out of range", `{"response":{"requestId":"r","statusCode":1000}}`, relay.ErrBadCommand},
		{"renew without token", `{"renewToken":{}}`, relay.ErrBadCommand},
		{"unknown", `{"ping":{}}`, relay.ErrUnknownCommand},
		{"too large", `{"accept":{"address":"` + strings.Repeat("a", relay.MaxControlMessage) + `","id":"b"}}`, relay.ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := relay.DecodeControlMessage([]byte(tt.in))
			if !errors.Is(err, tt.want) || m != nil {
				t.Fatalf("got %v, %v; want %v", m, err, tt.want)
			}
			if tt.want == relay.ErrBadCommand && errors.Is(err, relay.ErrUnknownCommand) {
				t.Fatalf("matches both sentinels: %v", err)
			}
		})
	}
}

func TestDecodeControlMessageDoesNotEchoToken(t *testing.T) {
	t.Parallel()
	_, err := relay.DecodeControlMessage([]byte(`{"renewToken":{"token":12345}, "x": "SharedAccessSignature sr=a&sig=SECRETSIG&se=1&skn=k"}`))
	if err == nil || strings.Contains(err.Error(), "SECRETSIG") {
		t.Fatalf("got %v", err)
	}
	_, err = relay.DecodeControlMessage([]byte(`{"renewToken":{"token":["SharedAccessSignature sr=a&sig=SECRETSIG&se=1&skn=k"]}}`))
	if err == nil || strings.Contains(err.Error(), "SECRETSIG") {
		t.Fatalf("got %v", err)
	}
}
