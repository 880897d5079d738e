package forward

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// checkLine fails t unless appendLine writes what json.Marshal writes for
// l, and fails exactly when json.Marshal fails.
func checkLine(t *testing.T, l *Line) {
	t.Helper()
	want, werr := json.Marshal(l)
	got, gerr := appendLine([]byte("x"), l)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("appendLine(%+v): got error %v, want %v", l, gerr, werr)
	}
	if werr == nil && string(got) != "x"+string(want) {
		t.Errorf("appendLine(%+v):\n got %s\nwant %s", l, got[1:], want)
	}
}

// checkReceipt is checkLine for appendReceipt and json.Encoder.Encode.
func checkReceipt(t *testing.T, rc *Receipt) {
	t.Helper()
	var want bytes.Buffer
	werr := json.NewEncoder(&want).Encode(rc)
	got, gerr := appendReceipt(nil, rc)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("appendReceipt(%+v): got error %v, want %v", rc, gerr, werr)
	}
	if werr == nil && string(got) != want.String() {
		t.Errorf("appendReceipt(%+v):\n got %s\nwant %s", rc, got, want.String())
	}
}

func ptr[T any](v T) *T { return &v }

func TestAppendLineMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 9, 1, 2, 345678900, time.UTC)
	for _, tt := range []struct {
		name string
		l    Line
	}{
		{"zero", Line{}},
		{"message", Line{Time: at, Connection: "c1", Type: "text", Text: ptr(`{"id":"1","message":"hi"}`)}},
		{"request", Line{Time: at, Request: "r1", Type: "http", Method: "POST", Target: "/hc/x?a=1&b=<2>", Text: ptr("")}},
		{"html and controls", Line{Time: at, Type: "text", Text: ptr("<script>&amp;\x00\t\n\"\\\u2028\u2029\x7f")}},
		{"invalid utf-8", Line{Time: at, Type: "t\xff", Connection: "\xc3(", Text: ptr("a\xed\xa0\x80b")}},
		{"binary", Line{Time: at, Type: "binary", Base64: ptr([]byte{0, 1, 2, 0xff, '<'})}},
		{"empty binary", Line{Time: at, Type: "binary", Base64: ptr([]byte{})}},
		{"nil binary", Line{Time: at, Type: "binary", Base64: new([]byte)}},
		{"whole seconds", Line{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{"zone offset", Line{Time: at.In(time.FixedZone("x", -(5*3600 + 30*60)))}},
		{"zone with seconds", Line{Time: at.In(time.FixedZone("x", 3600+7))}},
		{"year 10000", Line{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"year -1", Line{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"zone hour 24", Line{Time: at.In(time.FixedZone("x", 24*3600))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkLine(t, &tt.l)
		})
	}
}

func TestAppendReceiptMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 9, 1, 2, 345678900, time.UTC)
	for _, rc := range []Receipt{
		{},
		{Status: "received", Request: "3f2c", Method: "POST", Target: "/hc/x?a=1&b=<2>", Bytes: 100, Received: at},
		{Status: "received", Method: "G\xffT", Target: "/\u2028", Bytes: -1, Received: at.In(time.FixedZone("x", 7200))},
		{Received: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		checkReceipt(t, &rc)
	}
}

// FuzzAppendLine checks the hand-written Line and Receipt encoders against
// encoding/json.
func FuzzAppendLine(f *testing.F) {
	f.Add(int64(1795000000), int64(345678900), 0, "c1", "", "text", "", "", true, `{"message":"<hi> & bye"}`, false, []byte(nil))
	f.Add(int64(-62135596800), int64(0), -19800, "", "r1", "http", "POST", "/hc?a=1&b=2", false, "", true, []byte{0, 0xff})
	f.Add(int64(253402300800), int64(1), 86399, "\xff", "\u2028", "t\x00", "<", ">", true, "\xed\xa0\x80", true, []byte{})
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int, conn, req, typ, method, target string,
		hasText bool, text string, hasB64 bool, b64 []byte) {
		at := time.Unix(sec, nsec).In(time.FixedZone("z", offset))
		l := Line{Time: at, Connection: conn, Request: req, Type: typ, Method: method, Target: target}
		if hasText {
			l.Text = &text
		}
		if hasB64 {
			l.Base64 = &b64
		}
		checkLine(t, &l)
		checkReceipt(t, &Receipt{Status: typ, Request: req, Method: method, Target: target, Bytes: int(nsec), Received: at})
	})
}
