package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// Problem codes. Stable snake_case; clients may switch on them. The codes
// table below is the only place a code gets its status and title.
const (
	codeInvalidArgument      = "invalid_argument"
	codeUnauthenticated      = "unauthenticated"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codePayloadTooLarge      = "payload_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeInternal             = "internal"
	codeRelayAuth            = "relay_auth"
	codeRelayError           = "relay_error"
	codeRelayNotFound        = "relay_not_found"
	codeRelayUnreachable     = "relay_unreachable"
	codeNoListener           = "no_listener"
	codeUnavailable          = "unavailable"
	codeOverloaded           = "overloaded"
	codeDraining             = "draining"
	codeNotReady             = "not_ready"
	codeTimeout              = "timeout"
	// codeTokenMintingUnavailable: GET /token when the gateway holds no SAS
	// key (Microsoft Entra ID, or a fixed shared access signature).
	codeTokenMintingUnavailable = "token_minting_unavailable"
	codeHostNotAllowed          = "host_not_allowed"
	codeOriginNotAllowed        = "origin_not_allowed"
)

// problemTypePrefix + code is each problem's "type" URI.
const problemTypePrefix = "urn:relaygate:problem:"

// codes maps each code to its HTTP status and fixed title. A 503 always
// carries Retry-After.
var codes = map[string]struct {
	status int
	title  string
}{
	codeInvalidArgument:      {http.StatusBadRequest, "Invalid argument"},
	codeUnauthenticated:      {http.StatusUnauthorized, "Missing or invalid API key"},
	codeNotFound:             {http.StatusNotFound, "Not found"},
	codeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	codePayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
	codeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	codeInternal:             {http.StatusInternalServerError, "Internal error"},
	codeRelayAuth:            {http.StatusBadGateway, "Relay refused the gateway's credentials"},
	codeRelayError:           {http.StatusBadGateway, "Relay error"},
	codeRelayNotFound:        {http.StatusBadGateway, "Hybrid connection not found"},
	codeRelayUnreachable:     {http.StatusServiceUnavailable, "Relay unreachable"},
	codeNoListener:           {http.StatusServiceUnavailable, "No listener connected"},
	codeUnavailable:          {http.StatusServiceUnavailable, "No healthy relay connection"},
	codeOverloaded:           {http.StatusServiceUnavailable, "Gateway overloaded"},
	codeDraining:             {http.StatusServiceUnavailable, "Gateway shutting down"},
	codeNotReady:             {http.StatusServiceUnavailable, "Not ready"},
	codeTimeout:              {http.StatusGatewayTimeout, "Relay timeout"},

	codeTokenMintingUnavailable: {http.StatusNotImplemented, "Token minting needs a SAS key"},
	codeHostNotAllowed:          {http.StatusMisdirectedRequest, "Host not allowed"},
	codeOriginNotAllowed:        {http.StatusForbidden, "Origin not allowed"},
}

// fieldError is one entry of a problem's "errors": Pointer is a JSON
// Pointer in URI-fragment form ("#/message") into the request body;
// Parameter names a query parameter instead.
type fieldError struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Detail    string `json:"detail"`
}

// problem is an error a handler returns to get a specific problem
// response. Err is the cause: it is logged, never serialized.
type problem struct {
	Code   string
	Detail string
	Errors []fieldError
	Err    error
}

func (p *problem) Error() string {
	if p.Err != nil {
		return p.Code + ": " + p.Detail + ": " + p.Err.Error()
	}
	return p.Code + ": " + p.Detail
}

func (p *problem) Unwrap() error { return p.Err }

// Status is the HTTP status of p's code.
func (p *problem) Status() int {
	if c, ok := codes[p.Code]; ok {
		return c.status
	}
	return http.StatusInternalServerError
}

func newProblem(code, format string, args ...any) *problem {
	return &problem{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func invalid(detail string, errs ...fieldError) *problem {
	return &problem{Code: codeInvalidArgument, Detail: detail, Errors: errs}
}

// problemFor maps any handler error to a problem. It is the one place relay
// errors become HTTP statuses. Unknown errors become "internal" with a fixed
// detail.
func problemFor(err error) *problem {
	var p *problem
	if errors.As(err, &p) {
		return p
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &problem{Code: codePayloadTooLarge, Detail: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit), Err: err}
	case errors.Is(err, relay.ErrUnauthorized), errors.Is(err, relay.ErrForbidden):
		return &problem{Code: codeRelayAuth, Detail: "the relay refused the gateway's credentials", Err: err}
	case errors.Is(err, relay.ErrEntityNotFound):
		return &problem{Code: codeRelayNotFound, Detail: "the relay says the hybrid connection does not exist; check the EntityPath of the gateway's connection string", Err: err}
	case errors.Is(err, relay.ErrNoListener):
		// The pool keeps the typed cause in its ErrUnavailable chain. Over
		// WebSockets the relay answers a missing hybrid connection the same way.
		return &problem{Code: codeNoListener, Detail: "no listener is connected to the hybrid connection (if one is, check the EntityPath of the gateway's connection string)", Err: err}
	case errors.Is(err, relay.ErrUnreachable):
		return &problem{Code: codeRelayUnreachable, Detail: "the relay is unreachable (DNS, connection or TLS failure)", Err: err}
	case errors.Is(err, relay.ErrMessageTooLarge):
		return &problem{Code: codePayloadTooLarge, Detail: "the message exceeds the relay connection's limit", Err: err}
	case errors.Is(err, relay.ErrPartialWrite):
		// Not a 503/504: those promise the message was not sent.
		return &problem{Code: codeRelayError, Detail: "the relay connection failed while the message was being written: it may have been delivered", Err: err}
	case errors.Is(err, relay.ErrOverloaded):
		return &problem{Code: codeOverloaded, Detail: "every relay connection's send queue is full", Err: err}
	case errors.Is(err, relay.ErrClosed):
		return &problem{Code: codeDraining, Detail: "the gateway is shutting down", Err: err}
	case errors.Is(err, relay.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &problem{Code: codeTimeout, Detail: "the relay did not accept the message in time", Err: err}
	case errors.Is(err, relay.ErrUnavailable), errors.Is(err, relay.ErrConnLost), errors.Is(err, context.Canceled):
		return &problem{Code: codeUnavailable, Detail: "no healthy relay connection; the gateway is reconnecting", Err: err}
	case errors.Is(err, relay.ErrServerError):
		return &problem{Code: codeRelayError, Detail: "the relay failed", Err: err}
	}
	return &problem{Code: codeInternal, Detail: "internal error", Err: err}
}

// problemBody is the RFC 9457 document.
type problemBody struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Code      string       `json:"code"`
	RequestID string       `json:"request_id"`
	Errors    []fieldError `json:"errors,omitempty"`
}

// writeProblem writes p as application/problem+json, with Retry-After on
// every 503, and logs its cause.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	c, ok := codes[p.Code]
	if !ok {
		p = &problem{Code: codeInternal, Detail: "internal error", Err: p}
		c = codes[codeInternal]
	}
	ctx := r.Context()
	rid := requestIDOf(w)
	level := slog.LevelDebug
	switch {
	case p.Code == codeOverloaded:
		// Shedding is the gateway working as designed, and comes by the
		// thousand per second: one warning a second sums it up (each
		// request is still in the access log and the metrics).
		s.sheds.note(ctx, s.log)
	case c.status == http.StatusInternalServerError:
		level = slog.LevelError
	case c.status >= 500:
		level = slog.LevelWarn
	}
	if s.log.Enabled(ctx, level) {
		attrs := []slog.Attr{slog.String("request_id", rid), slog.String("code", p.Code), slog.Int("status", c.status), slog.String("detail", p.Detail)}
		if p.Err != nil {
			attrs = append(attrs, slog.String("err", p.Err.Error()))
		}
		s.log.LogAttrs(ctx, level, "request failed", attrs...)
	}
	s.metrics.Problem(p.Code)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	if c.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(s.cfg.RetryAfter)))
	}
	if c.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="relaygate"`)
	}
	w.WriteHeader(c.status)
	_ = json.NewEncoder(w).Encode(problemBody{
		Type:      problemTypePrefix + p.Code,
		Title:     c.title,
		Status:    c.status,
		Detail:    p.Detail,
		Code:      p.Code,
		RequestID: rid,
		Errors:    p.Errors,
	})
}

func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
