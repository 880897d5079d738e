package bench

import (
	"bytes"
	"errors"
	"strconv"
)

// responseHead is what evLoad needs of an HTTP/1.1 response's head.
type responseHead struct {
	status  int
	headLen int  // bytes up to and including the blank line; 0 while the head is incomplete
	bodyLen int  // from Content-Length
	close   bool // Connection: close
}

// maxResponseHead bounds a response head the load generator waits for.
const maxResponseHead = 8 << 10

// parseResponseHead parses the head of the HTTP/1.1 response at the start
// of b. A head without its blank line yet is not an error: headLen is 0.
// It accepts only what the load generator can frame, a Content-Length
// body (or none, for 1xx, 204 and 304), and rejects anything
// net/http's http.ReadResponse would reject.
func parseResponseHead(b []byte) (responseHead, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxResponseHead {
			return responseHead{}, errors.New("response head over 8 KiB")
		}
		return responseHead{}, nil
	}
	h := responseHead{headLen: end + 4, bodyLen: -1}
	line, rest, _ := bytes.Cut(b[:end], []byte("\r\n"))
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return h, errors.New("malformed status line")
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return h, errors.New("malformed status code")
		}
		h.status = h.status*10 + int(d-'0')
	}
	if h.status < 100 || !validValue(line[12:]) {
		return h, errors.New("malformed status line")
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		value = bytes.Trim(value, " \t")
		if !ok || !validName(name) || !validValue(value) {
			return h, errors.New("malformed header line")
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseUint(string(value), 10, 31)
			if err != nil || len(value) == 0 || value[0] < '0' || value[0] > '9' || h.bodyLen >= 0 && int(n) != h.bodyLen {
				return h, errors.New("bad Content-Length")
			}
			h.bodyLen = int(n)
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return h, errors.New("Transfer-Encoding is not supported by the load generator")
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				h.close = h.close || bytes.EqualFold(bytes.Trim(tok, " \t"), []byte("close"))
			}
		}
	}
	switch {
	case h.status < 200 || h.status == 204 || h.status == 304:
		h.bodyLen = 0
	case h.bodyLen < 0:
		return h, errors.New("response without Content-Length")
	}
	return h, nil
}

// validName reports whether b is an HTTP token (RFC 9110 §5.6.2).
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// validValue reports whether b holds no control bytes but tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
