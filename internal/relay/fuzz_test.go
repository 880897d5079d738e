package relay_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// FuzzParseToken checks that ParseToken never panics, that its errors wrap
// ErrTokenMalformed and never contain the signature, and that a token
// minted by CreateToken from fuzzed parts parses back to those parts.
func FuzzParseToken(f *testing.F) {
	for _, v := range []string{
		"SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco&sig=gHGnoHOcwOhFU%2FtcA6C%2BD3CoUGGRDkP6edGG5Xs0Y6I%3D&se=1893456000&skn=RootManageSharedAccessKey",
		"SharedAccessSignature sr=http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco%2f&sig=Oadg%2F&se=1893456000&skn=Root",
		"SharedAccessSignature%20sr%3Dhttp%253A%252F%252Fns%252Fhc%26sig%3Dabc%26se%3D1%26skn%3Dk",
		"sharedaccesssignature SKN=k&SE=1&SIG=x&SR=sb%3A%2F%2Fns%2F",
		"SharedAccessSignature sr=a&sig=%zz&se=1&skn=k",
		"SharedAccessSignature sr=a&&sig=b&se=99999999999999999999&skn=k",
		"SharedAccessSignature ",
		"",
	} {
		f.Add(v, "http://ns.example.com/hc", "key", int64(1893456000))
	}
	f.Fuzz(func(t *testing.T, raw, resource, key string, se int64) {
		tk, err := relay.ParseToken(raw)
		if err != nil {
			if !errors.Is(err, relay.ErrTokenMalformed) {
				t.Fatalf("error does not wrap ErrTokenMalformed: %v", err)
			}
			if i := strings.Index(raw, "sig="); i >= 0 {
				sig, _, _ := strings.Cut(raw[i+4:], "&")
				_, other := relay.ParseToken(raw[:i+4] + testlog.Scramble(sig) + raw[i+4+len(sig):])
				if len(sig) >= 8 && testlog.Echoes(sig, err.Error(), errText(other)) {
					t.Fatalf("error contains the signature: %v", err)
				}
			}
		} else if tk.KeyName == "" || tk.RawResource == "" {
			t.Fatalf("parsed token without key name or resource: %+v", tk)
		}

		// Round trip of minted tokens.
		if resource == "" || key == "" || se < 0 || se > 1<<40 {
			return
		}
		exp := time.Unix(se, 0)
		tok := relay.CreateToken(resource, "name", key, exp)
		p, err := relay.ParseToken(tok)
		if err != nil {
			if len(tok) > 4096 {
				return
			}
			t.Fatalf("minted token does not parse: %v", err)
		}
		if p.Resource != resource || p.KeyName != "name" || !p.Expiry.Equal(exp) || !p.CheckSignature(key) {
			t.Fatalf("round trip: got %q %q %v", p.Resource, p.KeyName, p.Expiry)
		}
		if p.CheckSignature(key + "x") {
			t.Fatal("signature verifies with another key")
		}
		// The description never carries the signature (a token holds no
		// key, only its HMAC). The fuzzed resource is printed, so a
		// signature that happens to be part of it proves nothing.
		sig := p.Signature()
		if !strings.Contains(resource, sig) && strings.Contains(p.String(), sig) {
			t.Fatal("String leaks the signature")
		}
	})
}

// FuzzParseConnectionString checks that parsing never panics, errors wrap
// ErrInvalidCredentials and never contain the key, and successful parses
// are stable when re-serialised.
func FuzzParseConnectionString(f *testing.F) {
	for _, v := range []string{
		"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=" + testKey + ";EntityPath=hc1",
		"Endpoint=sb://127.0.0.1:5055;SharedAccessKeyName=k;SharedAccessKey=" + testKey + ";EntityPath=hc1;UseDevelopmentEmulator=true",
		"Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1&skn=k;EntityPath=hc",
		"endpoint=sb://ns/hc;;sharedaccesskeyname=k;sharedaccesskey=" + testKey + ";OperationTimeout=00:01:00",
		"Endpoint=https://ns/;EntityPath=hc;Colour=blue",
		"Endpoint=sb://ns/;Endpoint=sb://ns/",
		"=;=;==",
		"",
	} {
		f.Add(v, testKey)
	}
	f.Fuzz(func(t *testing.T, s, key string) {
		for _, in := range []string{s, s + ";SharedAccessKey=" + key} {
			c, err := relay.ParseConnectionString(in)
			if err != nil {
				if !errors.Is(err, relay.ErrInvalidCredentials) {
					t.Fatalf("error does not wrap ErrInvalidCredentials: %v", err)
				}
				if c != (relay.Credentials{}) {
					t.Fatalf("non-zero credentials with an error: %v", c)
				}
				// A key of realistic length and alphabet never shows up
				// in an error (a key containing ';' or '=' breaks the
				// syntax, and its pieces are then other fields), unless
				// the same text shows up with another key (it is then
				// part of another field or of the message).
				if in != s && len(key) >= 8 && !strings.ContainsAny(key, ";=") && strings.TrimSpace(key) == key {
					_, other := relay.ParseConnectionString(s + ";SharedAccessKey=" + testlog.Scramble(key))
					if testlog.Echoes(key, err.Error(), errText(other)) {
						t.Fatalf("error contains the key: %v", err)
					}
				}
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("parsed credentials do not validate: %v", err)
			}
			// String does not depend on the key at all (a key name or
			// host may well contain the key's text; that is no leak).
			if other := c; c.Key != "" {
				other.Key = testlog.Scramble(c.Key)
				if c.String() != other.String() {
					t.Fatalf("String depends on the key: %q", c.String())
				}
			}
			// Re-serialise and parse again: same credentials.
			if strings.ContainsAny(c.Host+c.EntityPath+c.KeyName+c.Key+c.SharedAccessSignature, ";") {
				continue
			}
			var b strings.Builder
			b.WriteString("Endpoint=sb://" + c.Host + "/;EntityPath=" + c.EntityPath)
			if c.SharedAccessSignature != "" {
				b.WriteString(";SharedAccessSignature=" + c.SharedAccessSignature)
			} else {
				b.WriteString(";SharedAccessKeyName=" + c.KeyName + ";SharedAccessKey=" + c.Key)
			}
			if c.Insecure {
				b.WriteString(";UseDevelopmentEmulator=true")
			}
			c2, err := relay.ParseConnectionString(b.String())
			if err != nil {
				t.Fatalf("re-serialised %q: %v", b.String(), err)
			}
			if c2 != c {
				t.Fatalf("round trip: got %+v, want %+v", c2, c)
			}
		}
	})
}

// FuzzDecodeControlMessage checks that decoding never panics, errors wrap
// exactly one sentinel, and encoding a decoded message is a fixed point.
func FuzzDecodeControlMessage(f *testing.F) {
	for _, v := range []string{
		`{"accept":{"address":"wss://r/$hc/hc1?sb-hc-action=accept&sb-hc-id=a_G1","id":"a_G1","connectHeaders":{"Sec-WebSocket-Protocol":"p1"},"remoteEndpoint":{"address":"10.0.0.1","port":1234}}}`,
		`{"request":{"address":"wss://r/x","id":"r1","requestTarget":"/hc1/a?b=c","method":"POST","requestHeaders":{"A":"b"},"body":true}}`,
		`{"request":{"address":"wss://r/x?sb-hc-action=request","id":"r2"}}`,
		`{"response":{"requestId":"r1","statusCode":"200","statusDescription":"OK","body":false}}`,
		`{"renewToken":{"token":"SharedAccessSignature sr=a&sig=b&se=1&skn=k"}}`,
		`{"ping":{}}`,
		`{"accept":null}`,
		`{}`,
		`[]`,
		"{\"accept\":{\"address\":\"\xff\",\"id\":\"\u2028\"}}",
	} {
		f.Add([]byte(v))
		// Split inputs: a frame cut short must fail cleanly.
		f.Add([]byte(v[:len(v)/2]))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := relay.DecodeControlMessage(data)
		if err != nil {
			bad, unknown := errors.Is(err, relay.ErrBadCommand), errors.Is(err, relay.ErrUnknownCommand)
			if bad == unknown || m != nil {
				t.Fatalf("got %v, %v: want exactly one sentinel and no message", m, err)
			}
			return
		}
		n := 0
		for _, set := range []bool{m.Accept != nil, m.Request != nil, m.Response != nil, m.RenewToken != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d commands set", n)
		}
		enc, err := relay.EncodeControlMessage(m)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		m2, err := relay.DecodeControlMessage(enc)
		if err != nil {
			if len(enc) > relay.MaxControlMessage {
				return // escaping can grow a message past the limit
			}
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		enc2, err := relay.EncodeControlMessage(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("not a fixed point:\n%s\n%s", enc, enc2)
		}
	})
}

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
