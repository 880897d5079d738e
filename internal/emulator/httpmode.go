package emulator

import (
	"net/http"
	"net/url"

	"github.com/relaygate/relaygate/internal/relay"
)

// pendingRequest is an HTTP request-mode sender waiting for a response.
type pendingRequest struct {
	cc *controlChannel
}

func (p *pendingRequest) fail(*wireError) {}

func (s *Server) deliverResponse(*relay.ResponseCommand, []byte) {}

func (s *Server) failRequestsOf(*controlChannel) {}

func (s *Server) serveRequestMode(w http.ResponseWriter, r *http.Request, rawPath string) {
	s.writeStatus(w, r, "", &wireError{code: http.StatusNotImplemented, text: "HTTP request mode is not implemented yet.", reason: "bad_request"})
}

func (s *Server) handleRequestRendezvous(w http.ResponseWriter, r *http.Request, q url.Values) {
	s.writeStatus(w, r, "", &wireError{code: http.StatusForbidden, text: "URL not valid.", reason: "url_not_valid"})
}
