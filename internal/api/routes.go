package api

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/relaygate/relaygate"
)

// Handler returns the HTTP handler of the whole REST surface. Middleware
// order: RequestID → trace context (tracing.go) → logger (+ metrics) →
// Recoverer → Host and Origin checks → CORS; API keys on the /messages and
// /token group only.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	s.routes(r)
	return r
}

// routes is the only place chi paths appear.
func (s *Server) routes(r chi.Router) {
	r.Use(s.requestID, s.traceRequests, s.logRequests, s.recoverer, s.checkHostOrigin, s.cors, headAsGet)
	r.NotFound(s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return newProblem(codeNotFound, "no route for %s", truncate(r.URL.Path, maxEchoedPath))
	}))
	r.MethodNotAllowed(s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allowedMethods(r))
		return newProblem(codeMethodNotAllowed, "method %s is not allowed here", truncate(r.Method, 32))
	}))

	r.Get("/healthz", s.wrap(s.handleHealthz))
	r.Get("/readyz", s.wrap(s.handleReadyz))
	r.Get("/openapi.yaml", s.handleOpenAPI)
	if c := s.cfg.Console.Page; c != nil {
		r.Method(http.MethodGet, "/", c)
		r.Method(http.MethodGet, "/console/console.js", c)
		r.Method(http.MethodGet, "/console/console.css", c)
	}

	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		r.Post("/messages", s.wrap(s.handleSend))
		r.Post("/messages:batch", s.wrap(s.handleBatch)) // a literal ':' (chi treats only {…} as parameters)
		r.Get("/token", s.wrap(s.handleToken))
		if c := s.cfg.Console.Status; c != nil {
			r.Method(http.MethodGet, "/console/status", c)
		}
		if c := s.cfg.Console.Events; c != nil {
			r.Method(http.MethodGet, "/console/events", c)
		}
	})
}

// allowedMethods lists the methods routed for r's path, for the Allow
// header of a 405 (chi does not pass them to a custom handler).
func allowedMethods(r *http.Request) string {
	rctx := chi.RouteContext(r.Context())
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if rctx.Routes.Match(chi.NewRouteContext(), m, path) {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return strings.Join(allow, ", ")
}

// handleOpenAPI handles "GET /openapi.yaml": the embedded contract.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(relaygate.OpenAPI())
}
