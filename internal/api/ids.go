package api

import (
	"crypto/rand"
	"net/http"
	"sync"
	"unsafe"
)

// idBox holds a generated id and the one-element header value that carries
// it, so that generating an id and putting it in a header costs one
// allocation instead of three.
type idBox struct {
	text [36]byte
	hdr  [1]string
}

// newID returns a random (version 4) UUID string, as relay.NewID does, in
// one allocation.
func newID() string { return newIDBox().hdr[0] }

func newIDBox() *idBox {
	const hex = "0123456789abcdef"
	box := new(idBox)
	var u [16]byte
	readRandom(&u)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			box.text[j] = '-'
			j++
		}
		box.text[j], box.text[j+1] = hex[c>>4], hex[c&15]
		j += 2
	}
	// text is never written again, so the string may alias it.
	box.hdr[0] = unsafe.String(&box.text[0], len(box.text))
	return box
}

// randomBytes is a buffer of bytes from crypto/rand that ids are cut
// from, 16 at a time: one crypto/rand call per 32 ids instead of one per
// id (google/uuid's EnableRandPool does the same). The ids are
// identifiers, not secrets.
type randomBytes struct {
	b    [512]byte
	used int
}

var randomPool = sync.Pool{New: func() any { return &randomBytes{used: 512} }}

// readRandom fills u with random bytes.
func readRandom(u *[16]byte) {
	rb := randomPool.Get().(*randomBytes)
	if rb.used+len(u) > len(rb.b) {
		_, _ = rand.Read(rb.b[:]) // crypto/rand.Read never fails (Go 1.24+)
		rb.used = 0
	}
	rb.used += copy(u[:], rb.b[rb.used:])
	randomPool.Put(rb)
}

// requestIDHeader is X-Request-Id in canonical form, to index a Header.
const requestIDHeader = "X-Request-Id"

// setRequestID puts the request's id on the response. It is the one place
// the id is kept: requestIDOf reads it back, so the request's context is not
// copied to carry it.
func setRequestID(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if v := r.Header[requestIDHeader]; len(v) == 1 && validID(v[0]) {
		h[requestIDHeader] = v // the request's header slice is not written to
		return
	}
	h[requestIDHeader] = newIDBox().hdr[:]
}

// requestIDOf returns the id setRequestID put on w, or "".
func requestIDOf(w http.ResponseWriter) string {
	if v := w.Header()[requestIDHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}
