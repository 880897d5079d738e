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
	CodeInvalidArgument      = "invalid_argument"
	CodeUnauthenticated      = "unauthenticated"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeInternal             = "internal"
	CodeRelayAuth            = "relay_auth"
	CodeRelayError           = "relay_error"
	CodeRelayNotFound        = "relay_not_found"
	CodeRelayUnreachable     = "relay_unreachable"
	CodeNoListener           = "no_listener"
	CodeUnavailable          = "unavailable"
	CodeOverloaded           = "overloaded"
	CodeDraining             = "draining"
	CodeNotReady             = "not_ready"
	CodeTimeout              = "timeout"
)

// problemTypePrefix + code is each problem's "type" URI.
const problemTypePrefix = "urn:relaygate:problem:"

// codes maps each code to its HTTP status and fixed title. A 503 always
// carries Retry-After.
var codes = map[string]struct {
	status int
	title  string
}{
	CodeInvalidArgument:      {http.StatusBadRequest, "Invalid argument"},
	CodeUnauthenticated:      {http.StatusUnauthorized, "Missing or invalid API key"},
	CodeNotFound:             {http.StatusNotFound, "Not found"},
	CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	CodePayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
	CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	CodeInternal:             {http.StatusInternalServerError, "Internal error"},
	CodeRelayAuth:            {http.StatusBadGateway, "Relay refused the gateway's credentials"},
	CodeRelayError:           {http.StatusBadGateway, "Relay error"},
	CodeRelayNotFound:        {http.StatusBadGateway, "Hybrid connection not found"},
	CodeRelayUnreachable:     {http.StatusServiceUnavailable, "Relay unreachable"},
	CodeNoListener:           {http.StatusServiceUnavailable, "No listener connected"},
	CodeUnavailable:          {http.StatusServiceUnavailable, "No healthy relay connection"},
	CodeOverloaded:           {http.StatusServiceUnavailable, "Gateway overloaded"},
	CodeDraining:             {http.StatusServiceUnavailable, "Gateway shutting down"},
	CodeNotReady:             {http.StatusServiceUnavailable, "Not ready"},
	CodeTimeout:              {http.StatusGatewayTimeout, "Relay timeout"},
}

// FieldError is one entry of a problem's "errors": Pointer is a JSON
// Pointer in URI-fragment form ("#/message") into the request body;
// Parameter names a query parameter instead.
type FieldError struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Detail    string `json:"detail"`
}

// Problem is an error a handler returns to get a specific problem
// response. Err is the cause: it is logged, never serialized.
type Problem struct {
	Code   string
	Detail string
	Errors []FieldError
	Err    error
}

func (p *Problem) Error() string {
	if p.Err != nil {
		return p.Code + ": " + p.Detail + ": " + p.Err.Error()
	}
	return p.Code + ": " + p.Detail
}

func (p *Problem) Unwrap() error { return p.Err }

// Status is the HTTP status of p's code.
func (p *Problem) Status() int {
	if c, ok := codes[p.Code]; ok {
		return c.status
	}
	return http.StatusInternalServerError
}

func newProblem(code, format string, args ...any) *Problem {
	return &Problem{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func invalid(detail string, errs ...FieldError) *Problem {
	return &Problem{Code: CodeInvalidArgument, Detail: detail, Errors: errs}
}

// problemFor maps any handler error to a problem. It is the one place relay
// errors become HTTP statuses. Unknown errors become "internal" with a fixed
// detail.
func problemFor(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Problem{Code: CodePayloadTooLarge, Detail: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit), Err: err}
	case errors.Is(err, relay.ErrUnauthorized), errors.Is(err, relay.ErrForbidden):
		return &Problem{Code: CodeRelayAuth, Detail: "the relay refused the gateway's credentials", Err: err}
	case errors.Is(err, relay.ErrEntityNotFound):
		return &Problem{Code: CodeRelayNotFound, Detail: "the relay says the hybrid connection does not exist; check the EntityPath of the gateway's connection string", Err: err}
	case errors.Is(err, relay.ErrNoListener):
		// The pool keeps the typed cause in its ErrUnavailable chain. Over
		// WebSockets the relay answers a missing hybrid connection the same way.
		return &Problem{Code: CodeNoListener, Detail: "no listener is connected to the hybrid connection (if one is, check the EntityPath of the gateway's connection string)", Err: err}
	case errors.Is(err, relay.ErrUnreachable):
		return &Problem{Code: CodeRelayUnreachable, Detail: "the relay is unreachable (DNS, connection or TLS failure)", Err: err}
	case errors.Is(err, relay.ErrMessageTooLarge):
		return &Problem{Code: CodePayloadTooLarge, Detail: "the message exceeds the relay connection's limit", Err: err}
	case errors.Is(err, relay.ErrOverloaded):
		return &Problem{Code: CodeOverloaded, Detail: "every relay connection's send queue is full", Err: err}
	case errors.Is(err, relay.ErrClosed):
		return &Problem{Code: CodeDraining, Detail: "the gateway is shutting down", Err: err}
	case errors.Is(err, relay.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &Problem{Code: CodeTimeout, Detail: "the relay did not accept the message in time", Err: err}
	case errors.Is(err, relay.ErrUnavailable), errors.Is(err, relay.ErrConnLost), errors.Is(err, context.Canceled):
		return &Problem{Code: CodeUnavailable, Detail: "no healthy relay connection; the gateway is reconnecting", Err: err}
	case errors.Is(err, relay.ErrServerError):
		return &Problem{Code: CodeRelayError, Detail: "the relay failed", Err: err}
	}
	return &Problem{Code: CodeInternal, Detail: "internal error", Err: err}
}

// problemBody is the RFC 9457 document.
type problemBody struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Code      string       `json:"code"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// writeProblem writes p as application/problem+json, with Retry-After on
// every 503, and logs its cause.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	c, ok := codes[p.Code]
	if !ok {
		p = &Problem{Code: CodeInternal, Detail: "internal error", Err: p}
		c = codes[CodeInternal]
	}
	ctx := r.Context()
	rid := RequestID(ctx)
	level := slog.LevelDebug
	if c.status >= 500 {
		level = slog.LevelWarn
		if c.status == http.StatusInternalServerError {
			level = slog.LevelError
		}
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
