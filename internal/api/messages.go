package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/relaygate/relaygate/internal/relay"
)

// sendRequest is the application/json body of POST /messages.
type sendRequest struct {
	// Message is relayed byte for byte.
	Message json.RawMessage `json:"message" validate:"required"`
	// ID is a pointer so that "id": "" is rejected rather than ignored.
	ID *string `json:"id" validate:"omitempty,msgid"`
}

// Validate rejects a null message and a message that is not valid UTF-8
// (it is relayed in a text frame).
func (m *sendRequest) Validate() error {
	switch {
	case bytes.Equal(m.Message, []byte("null")):
		return invalid("request body is invalid", fieldError{Pointer: "#/message", Detail: "must not be null"})
	case !utf8.Valid(m.Message):
		return invalid("request body is invalid", fieldError{Pointer: "#/message", Detail: "must be valid UTF-8"})
	}
	return nil
}

// envelope is the text frame a listener receives for a JSON message:
// {"id":…,"message":…} with the message's bytes as posted (json.Marshal
// would compact a RawMessage, so it is assembled by hand).
func (m *sendRequest) envelope(id string) []byte {
	idJSON, _ := json.Marshal(id) // a string always marshals
	b := make([]byte, 0, len(m.Message)+len(idJSON)+len(`{"id":,"message":}`))
	b = append(b, `{"id":`...)
	b = append(b, idJSON...)
	b = append(b, `,"message":`...)
	b = append(b, m.Message...)
	return append(b, '}')
}

type sentResponse struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

type deliveredResponse struct {
	ID       string           `json:"id"`
	Status   string           `json:"status"`
	Listener listenerResponse `json:"listener"`
}

type listenerResponse struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"bodyEncoding"`
}

// Delivery modes of POST /messages.
const (
	deliverySend    = "send"
	deliveryRequest = "request"
)

// handleSend handles "POST /messages": it reads one message and sends it
// (delivery=send, 202) or delivers it as an HTTP request to the listener
// and returns the listener's answer (delivery=request, 200).
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) error {
	delivery, err := deliveryMode(r, s.cfg.RequestOnly)
	if err != nil {
		return err
	}
	if delivery == deliverySend {
		release, err := s.admit(r)
		if err != nil {
			return err
		}
		defer release()
	}
	msg, contentType, err := s.readMessage(w, r)
	if err != nil {
		return err
	}
	if delivery == deliveryRequest {
		return s.deliver(w, r, msg, contentType)
	}
	return s.send(w, r, msg)
}

// admit counts r's body against MaxInflightBytes, or refuses it with 503
// overloaded at once when the gateway already handles that much (a lone
// request is always admitted). release must be called when r is done.
func (s *Server) admit(r *http.Request) (release func(), err error) {
	limit := s.cfg.MaxInflightBytes
	if limit <= 0 {
		return func() {}, nil
	}
	cost := s.cfg.MaxBodyBytes
	if r.ContentLength >= 0 && r.ContentLength < cost {
		cost = max(r.ContentLength, 1)
	}
	if n := s.inflight.Add(cost); n > limit && n > cost {
		s.inflight.Add(-cost)
		return nil, newProblem(codeOverloaded, "the gateway is handling as many message bytes as it can; retry later")
	}
	return func() { s.inflight.Add(-cost) }, nil
}

// deliveryMode returns the ?delivery= query parameter, send by default. A
// request-only server (Config.RequestOnly) defaults to request and refuses
// send.
func deliveryMode(r *http.Request, requestOnly bool) (string, error) {
	q := r.URL.Query()
	if !q.Has("delivery") {
		if requestOnly {
			return deliveryRequest, nil
		}
		return deliverySend, nil
	}
	delivery := q.Get("delivery")
	if delivery != deliverySend && delivery != deliveryRequest || len(q["delivery"]) > 1 {
		return "", invalid("invalid query parameter", fieldError{Parameter: "delivery", Detail: "must be send or request"})
	}
	if requestOnly && delivery == deliverySend {
		return "", invalid("invalid query parameter", fieldError{Parameter: "delivery",
			Detail: "must be request: this gateway delivers in HTTP request mode only (its listener serves no WebSockets)"})
	}
	return delivery, nil
}

// readMessage reads the message of a POST /messages by its Content-Type:
// a JSON envelope, UTF-8 text or binary. contentType is what a listener
// gets with delivery=request.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request) (msg relay.Message, contentType string, err error) {
	const unsupported = "Content-Type must be application/json, text/plain or application/octet-stream"
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		return msg, "", newProblem(codeUnsupportedMediaType, unsupported)
	}
	msg.Type = relay.MessageText
	switch mt {
	case "application/json":
		req, err := decodeJSON[sendRequest](w, r, s.validate, s.cfg.MaxBodyBytes)
		if err != nil {
			return msg, "", err
		}
		msg.ID = relay.NewID()
		if req.ID != nil {
			msg.ID = *req.ID
		}
		msg.Data = req.envelope(msg.ID)
		contentType = "application/json"
	case "text/plain":
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
			return msg, "", newProblem(codeUnsupportedMediaType, "text/plain must be UTF-8")
		}
		if msg.Data, err = readBody(w, r, s.cfg.MaxBodyBytes); err != nil {
			return msg, "", err
		}
		if !utf8.Valid(msg.Data) {
			return msg, "", invalid("text/plain body is not valid UTF-8")
		}
		contentType = "text/plain; charset=utf-8"
	case "application/octet-stream":
		if msg.Data, err = readBody(w, r, s.cfg.MaxBodyBytes); err != nil {
			return msg, "", err
		}
		msg.Type = relay.MessageBinary
		contentType = "application/octet-stream"
	default:
		return msg, "", newProblem(codeUnsupportedMediaType, unsupported)
	}
	if msg.ID == "" {
		msg.ID = relay.NewID()
	}
	return msg, contentType, nil
}

// send hands msg to the relayer, bounded by SendTimeout, and answers 202.
func (s *Server) send(w http.ResponseWriter, r *http.Request, msg relay.Message) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SendTimeout)
	defer cancel()
	if err := s.relayer.Send(ctx, msg); err != nil {
		return err
	}
	s.metrics.Relayed(msg.Type.String(), deliverySend, len(msg.Data))
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "message sent",
			slog.String("request_id", requestIDFrom(r.Context())), slog.String("id", msg.ID),
			slog.String("type", msg.Type.String()), slog.Int("bytes", len(msg.Data)))
	}
	return writeJSON(w, http.StatusAccepted, sentResponse{ID: msg.ID, Status: "sent"})
}

// hopHeaders are not relayed back from the listener.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Via": true,
	"Content-Length": true, "Set-Cookie": true,
}

// deliver sends msg through the relay's HTTP request mode and wraps the
// listener's answer, whatever its status, in a 200 "delivered" document.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, msg relay.Message, contentType string) error {
	if s.requester == nil {
		return newProblem(codeUnavailable, "delivery=request is not available on this gateway")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DeliveryTimeout)
	defer cancel()
	resp, err := s.requester.Request(ctx, ListenerRequest{ID: msg.ID, RequestID: requestIDFrom(r.Context()), ContentType: contentType, Body: msg.Data})
	if err != nil {
		if errors.Is(err, ErrListenerBodyTooLarge) {
			return &problem{Code: codeRelayError, Detail: "the listener's response exceeds the gateway's body limit", Err: err}
		}
		return err
	}
	s.metrics.Relayed(msg.Type.String(), deliveryRequest, len(msg.Data))
	lr := listenerResponse{Status: resp.Status, Headers: map[string]string{}}
	for k, v := range resp.Header {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			lr.Headers[http.CanonicalHeaderKey(k)] = strings.Join(v, ", ")
		}
	}
	if utf8.Valid(resp.Body) {
		lr.Body, lr.BodyEncoding = string(resp.Body), "utf-8"
	} else {
		lr.Body, lr.BodyEncoding = base64.StdEncoding.EncodeToString(resp.Body), "base64"
	}
	return writeJSON(w, http.StatusOK, deliveredResponse{ID: msg.ID, Status: "delivered", Listener: lr})
}

// ErrListenerBodyTooLarge is returned by a Requester when the listener's
// response body exceeds the limit.
var ErrListenerBodyTooLarge = errors.New("api: listener response body too large")
