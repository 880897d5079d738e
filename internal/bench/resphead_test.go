package bench

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseResponseHead(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    responseHead
		wantErr string
	}{
		{in: "HTTP/1.1 202 Accepted\r\nContent-Length: 57\r\n", want: responseHead{}},
		{in: "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\ncontent-length:  57 \r\n\r\n{", want: responseHead{status: 202, headLen: 79, bodyLen: 57}},
		{in: "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", want: responseHead{status: 503, headLen: 86, close: true}},
		{in: "HTTP/1.1 204\r\n\r\n", want: responseHead{status: 204, headLen: 16}},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", want: responseHead{status: 200, headLen: 57, bodyLen: 5}},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", wantErr: "bad Content-Length"},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", wantErr: "bad Content-Length"},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: "Transfer-Encoding"},
		{in: "HTTP/1.1 200 OK\r\n\r\n", wantErr: "without Content-Length"},
		{in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", wantErr: "status line"},
		{in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: "status code"},
		{in: "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", wantErr: "header line"},
		{in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", 2000), wantErr: "over 8 KiB"},
	} {
		got, err := parseResponseHead([]byte(tc.in))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseResponseHead: whatever the load generator accepts, net/http
// reads the same way (status, body length, close).
func FuzzParseResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{}\n"))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseResponseHead(b)
		if err != nil || h.headLen == 0 {
			return
		}
		resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
		if rerr != nil {
			t.Fatalf("parsed %+v, but net/http says %v", h, rerr)
		}
		defer resp.Body.Close()
		wantLen := resp.ContentLength
		if h.status < 200 || h.status == 204 || h.status == 304 {
			wantLen = 0
		}
		if resp.StatusCode != h.status || wantLen != int64(h.bodyLen) || resp.Close != h.close {
			t.Fatalf("parsed %+v; net/http: status %d, length %d, close %v", h, resp.StatusCode, resp.ContentLength, resp.Close)
		}
	})
}
