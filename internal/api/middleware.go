package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// idPattern documents what a caller's X-Request-Id and a client message id
// must match (validID checks it without a regexp): safe to log and to put in
// headers and JSON as is.
const idPattern = `^[A-Za-z0-9._:-]{1,128}$`

// requestID honours a valid X-Request-Id or generates one, and returns it
// in the response header, where requestIDOf finds it.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRequestID(w, r)
		if s.isDraining() {
			// net/http closes the connection after this response.
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// quietRoutes are logged at debug level.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true}

// logRequests logs one line per request and records request metrics. It
// never logs the query string or headers (they may hold credentials).
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := getStatusWriter(w)
		defer func() {
			defer ww.release()
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			s.metrics.ObserveRequest(route, r.Method, status, d)
			level := slog.LevelInfo
			if quietRoutes[route] && status < 500 {
				level = slog.LevelDebug // probes and scrapes every few seconds
			}
			h := s.log.Handler()
			if !h.Enabled(r.Context(), level) {
				return
			}
			// A record built here, not by Logger.LogAttrs: that one
			// looks up its caller's PC (runtime.Callers) for every line,
			// which no handler of ours prints.
			rec := slog.NewRecord(start.Add(d), level, "http request", 0)
			rec.AddAttrs(
				slog.String("request_id", requestIDOf(w)),
				slog.String("method", r.Method),
				slog.String("path", truncate(r.URL.Path, maxEchoedPath)),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", d),
				slog.String("remote", r.RemoteAddr),
			)
			_ = h.Handle(r.Context(), rec)
		}()
		next.ServeHTTP(ww, r)
	})
}

// recoverer turns a panic into a logged 500 problem (if nothing was written
// yet). http.ErrAbortHandler is re-panicked, as net/http expects.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.log.LogAttrs(r.Context(), slog.LevelError, "panic",
				slog.String("request_id", requestIDOf(w)), slog.Any("panic", v))
			if ww, ok := w.(*statusWriter); ok && ww.Status() != 0 {
				return
			}
			s.writeProblem(w, r, &problem{Code: codeInternal, Detail: "internal error"})
		}()
		next.ServeHTTP(w, r)
	})
}

// cors answers preflight requests from allowed origins and adds the CORS
// headers to their actual requests. Requests from other origins get no
// CORS headers (the browser then blocks them).
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if origin != "" {
			h.Add("Vary", "Origin")
		}
		allowed := origin != "" && (s.anyOrigin || s.origins[origin])
		if allowed {
			if s.anyOrigin {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
			}
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if allowed {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, X-Request-Id")
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hashKey(k string) [32]byte { return sha256.Sum256([]byte(k)) }

// authenticate requires one of the configured API keys, as
// "Authorization: Bearer <key>" or "X-API-Key: <key>", when any are
// configured. Keys are compared as SHA-256 digests in constant time, all of
// them every time.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if len(s.keys) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented := r.Header.Get("X-API-Key")
		if a := r.Header.Get("Authorization"); presented == "" && len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			presented = strings.TrimSpace(a[7:])
		}
		if presented == "" {
			s.writeProblem(w, r, newProblem(codeUnauthenticated, "an API key is required (Authorization: Bearer <key> or X-API-Key)"))
			return
		}
		d := hashKey(presented)
		ok := 0
		for i := range s.keys {
			ok |= subtle.ConstantTimeCompare(d[:], s.keys[i][:])
		}
		if ok != 1 {
			s.writeProblem(w, r, newProblem(codeUnauthenticated, "the API key is not valid"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
