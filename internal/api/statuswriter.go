package api

import (
	"net/http"
	"sync"
)

// maxEchoedPath bounds the request path in a 404's detail and a log line.
const maxEchoedPath = 256

// statusWriter records the status and body size of a response for the
// access log. It is pooled: logRequests takes one per request and returns
// it when the handler chain has returned. Unwrap lets
// http.ResponseController reach the server's writer (deadlines, Flush).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

var statusWriterPool = sync.Pool{New: func() any { return new(statusWriter) }}

func getStatusWriter(w http.ResponseWriter) *statusWriter {
	sw := statusWriterPool.Get().(*statusWriter)
	sw.ResponseWriter = w
	return sw
}

func (w *statusWriter) release() {
	*w = statusWriter{}
	statusWriterPool.Put(w)
}

// Status is the status written so far, 0 if none.
func (w *statusWriter) Status() int { return w.status }

// BytesWritten is the number of body bytes written.
func (w *statusWriter) BytesWritten() int { return w.bytes }

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += n
	return n, err
}

// Flush implements http.Flusher for handlers that assert it.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap returns the underlying writer (for http.ResponseController).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
