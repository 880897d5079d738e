package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// buffer is a pooled byte slice for a request body or a relay frame. The
// request path takes one from bufPool and returns it once nothing refers
// to its bytes: the relay does not hold a message's Data after Send returns
// (see Relayer), and the response is copied by net/http on Write.
type buffer struct{ b []byte }

// maxPooledBuffer: larger buffers are left to the garbage collector, so
// that one 1 MiB body does not pin 1 MiB per pooled buffer (sync.Pool
// drops idle buffers after two garbage collections anyway).
const maxPooledBuffer = 256 << 10

var bufPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 1<<10)} }}

func getBuffer() *buffer { return bufPool.Get().(*buffer) }

// release returns b to the pool; b must not be used afterwards.
func (b *buffer) release() {
	if b == nil || cap(b.b) > maxPooledBuffer {
		return
	}
	b.b = b.b[:0]
	bufPool.Put(b)
}

// readBody reads r's whole body into a pooled buffer: a Content-Encoding
// other than identity is a 415 (the limit applies to what is relayed, and
// decoding is the client's job), more than limit bytes a
// *http.MaxBytesError (413; a declared Content-Length over the limit is
// refused before reading), an empty body a 400.
func readBody(r *http.Request, limit int64) (*buffer, error) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, newProblem(codeUnsupportedMediaType, "Content-Encoding must be identity; send the body uncompressed")
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	buf := getBuffer()
	if r.ContentLength > 0 && int64(cap(buf.b)) <= r.ContentLength {
		buf.b = make([]byte, 0, r.ContentLength+1) // +1: room for the read that sees EOF
	}
	for {
		if len(buf.b) == cap(buf.b) {
			buf.b = append(buf.b, 0)[:len(buf.b)]
		}
		n, err := r.Body.Read(buf.b[len(buf.b):cap(buf.b)])
		buf.b = buf.b[:len(buf.b)+n]
		if int64(len(buf.b)) > limit {
			buf.release()
			return nil, &http.MaxBytesError{Limit: limit}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			buf.release()
			return nil, invalid("cannot read the request body")
		}
	}
	if len(buf.b) == 0 {
		buf.release()
		return nil, invalid("request body is empty")
	}
	return buf, nil
}

// mediaType splits a Content-Type into its lower-case-insensitive type
// and its charset parameter (other parameters are ignored) without
// allocating. ok is false for an empty or malformed type.
func mediaType(ct string) (mt, charset string, ok bool) {
	mt, params, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	if t, sub, found := strings.Cut(mt, "/"); !found || t == "" || sub == "" {
		return "", "", false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			charset = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return mt, charset, true
}

// isUTF8Charset: absent, utf-8 (or its us-ascii subset).
func isUTF8Charset(cs string) bool {
	return cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8") || strings.EqualFold(cs, "us-ascii")
}

func unquote(s string) (string, error) {
	var out string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

// pointer builds a JSON Pointer in URI-fragment form from field names.
func pointer(names ...string) string {
	var b strings.Builder
	b.WriteByte('#')
	for _, n := range names {
		n = strings.ReplaceAll(n, "~", "~0")
		n = strings.ReplaceAll(n, "/", "~1")
		b.WriteByte('/')
		b.WriteString(fragmentEscape(n))
	}
	return b.String()
}

// fragmentEscape percent-encodes what may not appear in a URI fragment.
func fragmentEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// truncate shortens s to at most n bytes (on a UTF-8 boundary), marking a
// cut with "…", so that no answer or log line echoes a huge input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
