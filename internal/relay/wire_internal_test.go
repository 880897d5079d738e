package relay

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeHot checks that the one-pass decoder of request-mode commands
// agrees with the general decoder wherever it answers.
func FuzzDecodeHot(f *testing.F) {
	for _, v := range []string{
		`{"request":{"address":"wss://r/x","id":"r1","requestTarget":"/hc1/a?b=c","method":"POST","requestHeaders":{"A":"b"},"body":true}}`,
		`{"request":{"address":"wss://r/x?sb-hc-action=request","id":"r2"}}`,
		` {"response":{"requestId":"r1","statusCode":"200","statusDescription":"OK","body":false}} `,
		`{"response":{"requestId":"r1","statusCode":200,"responseHeaders":{"X":"y"},"body":true}}`,
		`{"request":{"id":"r3"}}`,
		`{"response":{"requestId":"r1","statusCode":200},"accept":{"address":"a","id":"b"}}`,
		`{"request":{"address":"a","id":"1"},"request":{"address":"b","id":"2"}}`,
		`{"response":null}`,
		`{"request":{"address":"a","id":"1"} }`,
		"\t{ \"request\" : { \"method\" : \"GET\" , \"body\" : false , \"remoteEndpoint\":{\"address\":\"::1\",\"port\":0}} }\r\n",
		"\v{\"request\":{\"address\":\"a\"}}",
		`{"request":{"method":"GET","body":false,"requestHeaders":{}}}`,
		`{"request":{"method":"GET","body":true,"requestHeaders":{"A":"1","A":"2"}}}`,
		`{"request":{"method":"GET","body":true,"requestHeaders":{"A":"1"},"requestHeaders":{"B":"2"}}}`,
		`{"request":{"method":"GET","body":true,"remoteEndpoint":{"port":1},"remoteEndpoint":{"address":"x"}}}`,
		`{"request":{"Method":"GET","body":true}}`,
		`{"request":{"method":"G\u0045T","body":true}}`,
		`{"request":{"method":"GÉT","body":true,"requestTarget":"/\u2028"}}`,
		`{"request":{"address":"a","remoteEndpoint":{"address":"b","port":08}}}`,
		`{"request":{"address":"a","remoteEndpoint":{"address":"b","port":1e3}}}`,
		`{"response":{"requestId":"r","statusCode":"0200","body":true}}`,
		`{"response":{"requestId":"r","statusCode":" 200","body":true}}`,
		`{"response":{"requestId":"r","statusCode":2e2,"body":true}}`,
		`{"response":{"requestId":"r","statusCode":1000,"body":true}}`,
		`{"response":{"requestId":"r","statusCode":204,"body":null}}`,
	} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hot := decodeHot(data)
		if hot == nil {
			return
		}
		general, err := decodeGeneral(data)
		if err != nil || !reflect.DeepEqual(hot, general) {
			t.Fatalf("%q: one-pass %+v, general %+v, %v", data, hot, general, err)
		}
	})
}

// FuzzEncodeHot checks that the hand-written encoder of request and
// response commands writes exactly what a json.Encoder without HTML
// escaping writes.
func FuzzEncodeHot(f *testing.F) {
	f.Add("wss://r/$hc/hc1?sb-hc-action=request&sb-hc-id=1", "1", "/hc1/a?b=<c>&d", "POST", "10.0.0.1", 443, "Content-Type", "text/plain; charset=utf-8", "X-\u2028", "\xff\x01\"\\\t", uint8(3), 200, "OK")
	f.Add("", "", "", "", "", 0, "", "", "", "", uint8(0), 599, "")
	f.Fuzz(func(t *testing.T, addr, id, target, method, raddr string, port int, k1, v1, k2, v2 string, opts uint8, status int, desc string) {
		rc := &RequestCommand{Address: addr, ID: id, RequestTarget: target, Method: method}
		if opts&1 != 0 {
			rc.RemoteEndpoint = &RemoteEndpoint{Address: raddr, Port: port}
		}
		if opts&2 != 0 {
			rc.RequestHeaders = map[string]string{k1: v1, k2: v2}
		}
		if opts&4 != 0 {
			rc.Body = Bool(opts&8 != 0)
		}
		resp := &ResponseCommand{RequestID: id, StatusCode: StatusCode(status), StatusDescription: desc, Body: opts&16 != 0}
		if opts&32 != 0 {
			resp.ResponseHeaders = map[string]string{k1: v1, k2: v2}
		}
		for _, m := range []*ControlMessage{{Request: rc}, {Response: resp}} {
			got, err := EncodeControlMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(m); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
				t.Fatalf("encoded\n%s\nencoding/json\n%s", got, want.Bytes())
			}
		}
	})
}

// TestDecodeHotShapes checks that the one-pass decoder takes the commands
// that the relay and the listener write.
func TestDecodeHotShapes(t *testing.T) {
	for _, m := range []*ControlMessage{
		{Request: &RequestCommand{Address: "wss://r/$hc/hc?sb-hc-action=request&sb-hc-id=1", ID: "1", RequestTarget: "/hc?a=b",
			Method: "POST", RemoteEndpoint: &RemoteEndpoint{Address: "127.0.0.1", Port: 5000},
			RequestHeaders: map[string]string{"Content-Type": "application/json", "Via": "1.1 r"}, Body: Bool(true)}},
		{Request: &RequestCommand{Address: "wss://r/x", ID: "2"}},
		{Response: &ResponseCommand{RequestID: "1", StatusCode: 202, StatusDescription: "Accepted", Body: false}},
		{Response: &ResponseCommand{RequestID: "1", StatusCode: 200, ResponseHeaders: map[string]string{"Content-Type": "text/plain"}, Body: true}},
	} {
		data, err := EncodeControlMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeHot(data); !reflect.DeepEqual(got, m) {
			t.Errorf("decodeHot(%s) = %+v, want %+v", data, got, m)
		}
	}
}
