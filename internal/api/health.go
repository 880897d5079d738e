package api

import "net/http"

type health struct {
	Status string `json:"status"`
}

// handleHealthz handles "GET /healthz": the process is alive.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, health{Status: "ok"})
}

// handleReadyz handles "GET /readyz": ready while not draining and the
// relayer (if it can tell) holds a healthy connection.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if s.isDraining() {
		return newProblem(codeNotReady, "draining: the gateway is shutting down")
	}
	if rc, ok := s.relayer.(ReadinessChecker); ok {
		if ready, why := rc.Ready(); !ready {
			if why == "" {
				why = "no healthy relay connection"
			}
			return newProblem(codeNotReady, "%s", why)
		}
	}
	return writeJSON(w, http.StatusOK, health{Status: "ready"})
}
