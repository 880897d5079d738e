package forward

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEnvelopeTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tt := range []struct {
		data string
		want string
	}{
		{`{"id":"m1","traceparent":"` + tp + `","message":{"a":1}}`, tp},
		{`{"id":"m1","message":{"a":1}}`, ""},
		{`{"id":"m1","message":"x","traceparent":"` + tp + `"}`, ""}, // only the gateway's position counts
		{`{"id":1,"traceparent":"` + tp + `"}`, ""},
		{`{"id":"m1","traceparent":{"x":1}}`, ""},
		{`{"id":"m1","traceparent":`, ""},
		{`plain text`, ""},
		{`{"message":"x","id":"m1"}`, ""},
	} {
		if got := envelopeTraceparent([]byte(tt.data)); got != tt.want {
			t.Errorf("envelopeTraceparent(%s) = %q, want %q", tt.data, got, tt.want)
		}
	}
}

// FuzzEnvelopeTraceparent: any message is read without panicking, and a
// non-empty result is the envelope's second member, a JSON string.
func FuzzEnvelopeTraceparent(f *testing.F) {
	for _, s := range []string{`{"id":"a","traceparent":"00-x-y-01","message":1}`, `{"id":"a","message":1}`,
		`{"id":`, `{"id":"a","traceparent":"\u0030"}`, `{"id":[],"traceparent":"x"}`, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := envelopeTraceparent(data)
		if got == "" {
			return
		}
		if !strings.HasPrefix(string(data), `{"id":`) {
			t.Fatalf("%q: found %q outside an envelope", data, got)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			var s string
			if json.Unmarshal(m["traceparent"], &s) != nil {
				t.Fatalf("%q: found %q but the member is not a string", data, got)
			}
		}
	})
}
