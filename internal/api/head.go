package api

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"
)

// headAsGet answers HEAD wherever GET is routed (chi's GetHead; net/http
// drops the body). A HEAD has no body to wait for, so its context ends as
// soon as the headers are written: a streaming GET handler such as
// /console/events then returns instead of holding the connection.
func headAsGet(next http.Handler) http.Handler {
	getHead := middleware.GetHead(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		getHead.ServeHTTP(&headWriter{ResponseWriter: w, done: cancel}, r.WithContext(ctx))
	})
}

// headWriter ends a HEAD's context once its headers are written.
type headWriter struct {
	http.ResponseWriter
	done context.CancelFunc
}

func (w *headWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code >= 200 {
		w.done()
	}
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.done()
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher for handlers that assert it.
func (w *headWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap returns the underlying writer (for http.ResponseController).
func (w *headWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
