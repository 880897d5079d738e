package api

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// deliveredDoc is the "delivered" answer as encoding/json writes it: the
// reference for appendDelivered.
type deliveredDoc struct {
	ID       string      `json:"id"`
	Status   string      `json:"status"`
	Listener listenerDoc `json:"listener"`
}

type listenerDoc struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"bodyEncoding"`
}

// referenceDelivered is the answer for resp through a map and writeJSON,
// as the gateway wrote it before appendDelivered.
func referenceDelivered(t testing.TB, id string, resp *ListenerResponse) []byte {
	lr := listenerDoc{Status: resp.Status, Headers: map[string]string{}}
	for k, v := range resp.Header {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			lr.Headers[http.CanonicalHeaderKey(k)] = strings.Join(v, ", ")
		}
	}
	if utf8.Valid(resp.Body) {
		lr.Body, lr.BodyEncoding = string(resp.Body), "utf-8"
	} else {
		lr.Body, lr.BodyEncoding = base64.StdEncoding.EncodeToString(resp.Body), "base64"
	}
	rec := httptest.NewRecorder()
	if err := writeJSON(rec, http.StatusOK, deliveredDoc{ID: id, Status: "delivered", Listener: lr}); err != nil {
		t.Fatal(err)
	}
	return rec.Body.Bytes()
}

// FuzzAppendDelivered checks appendDelivered against encoding/json for any
// id, status, headers (up to three, with any names and values) and body.
// Headers whose names collide once canonical are left out: the map the
// reference builds keeps one of them at random.
func FuzzAppendDelivered(f *testing.F) {
	f.Add("m-1", 200, "Content-Type", "text/plain", "X-A", "1", "via", "x", []byte("ok"))
	f.Add("", 404, "x-b", "a\"b\\c<>&\u2028", "X-B", "dup", "Connection", "close", []byte{0xff, 0xfe, 'a'})
	f.Add("id\x00\n", 599, "Set-Cookie", "s=1", "ä-bad name", "v\x7f", "Content-Length", "2", []byte("\xe2\x80\xa8<b>"))
	f.Fuzz(func(t *testing.T, id string, status int, k1, v1, k2, v2, k3, v3 string, body []byte) {
		h := http.Header{}
		seen := map[string]bool{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			ck := http.CanonicalHeaderKey(kv[0])
			if seen[ck] {
				continue
			}
			seen[ck] = true
			h[kv[0]] = append(h[kv[0]], kv[1], kv[1]+"2")[:1+len(kv[1])%2]
		}
		resp := &ListenerResponse{Status: status, Header: h, Body: body}
		got := appendDelivered(nil, id, resp)
		if want := referenceDelivered(t, id, resp); !bytes.Equal(got, want) {
			t.Fatalf("appendDelivered:\n got %q\nwant %q", got, want)
		}
	})
}

// TestWriteDelivered checks the answer's status, content type and a
// document with several headers, one of them with two values, and the
// hop-by-hop ones left out.
func TestWriteDelivered(t *testing.T) {
	resp := &ListenerResponse{Status: 201, Body: []byte("made"), Header: http.Header{
		"X-B": {"2"}, "X-A": {"1", "one"}, "Connection": {"close"}, "Content-Type": {"text/plain"}, "Via": {"1.1 relay"},
	}}
	rec := httptest.NewRecorder()
	writeDelivered(rec, "m-7", resp)
	want := `{"id":"m-7","status":"delivered","listener":{"status":201,"headers":{"Content-Type":"text/plain","X-A":"1, one","X-B":"2"},"body":"made","bodyEncoding":"utf-8"}}` + "\n"
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != want {
		t.Fatalf("got %d %q %s, want 200 application/json %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, want)
	}
	if ref := referenceDelivered(t, "m-7", resp); !bytes.Equal(rec.Body.Bytes(), ref) {
		t.Fatalf("differs from encoding/json: %s", ref)
	}
}

// BenchmarkDeliveredAnswer compares the request-mode answer built by hand
// with the same document through a map and encoding/json.
func BenchmarkDeliveredAnswer(b *testing.B) {
	resp := &ListenerResponse{Status: 200, Body: []byte(`{"ok":true}`), Header: http.Header{
		"Content-Type": {"application/json"}, "Date": {"Mon, 30 Nov 2026 12:00:00 GMT"}, "X-Request-Id": {"4f6c"},
	}}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			referenceDelivered(b, "m-1", resp)
		}
	})
	b.Run("by-hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeDelivered(httptest.NewRecorder(), "m-1", resp)
		}
	})
}
