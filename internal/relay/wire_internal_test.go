package relay

import (
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
