package forward

import "testing"

// FuzzTextual: any Content-Type a local service sends is classified
// without panicking.
func FuzzTextual(f *testing.F) {
	for _, s := range []string{"", "text/plain; charset=utf-8", "application/json", "application/problem+json",
		"application/octet-stream", "image/svg+xml", "text/", ";;", "a/b; c=\"unterminated"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) { _ = textual(ct) })
}
