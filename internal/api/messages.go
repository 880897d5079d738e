package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relaygate/relaygate/internal/relay"
)

// appendEnvelope appends the text frame a listener receives for a JSON
// message, {"id":…,"message":…}, with the message's bytes as posted. id
// needs no escaping: it matches idPattern or is a generated UUID. A
// non-empty traceparent (Config.EnvelopeTraceparent; W3C form, hex digits
// and dashes) comes second: {"id":…,"traceparent":…,"message":…}.
func appendEnvelope(b []byte, id, traceparent string, message []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	if traceparent != "" {
		b = append(b, `","traceparent":"`...)
		b = append(b, traceparent...)
	}
	b = append(b, `","message":`...)
	b = append(b, message...)
	return append(b, '}')
}

// Delivery modes of POST /messages.
const (
	deliverySend    = "send"
	deliveryRequest = "request"
)

// handleSend handles "POST /messages": it reads one message and sends it
// (delivery=send, 202) or delivers it as an HTTP request to the listener
// and returns the listener's answer (delivery=request, 200). The body and
// the JSON envelope live in pooled buffers until the relay has taken them.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) (err error) {
	delivery, err := deliveryMode(r, s.cfg.RequestOnly)
	if err != nil {
		return err
	}
	if delivery == deliverySend {
		ad, aerr := s.admit(w, r)
		if aerr != nil {
			return aerr
		}
		defer func() { s.admission.done(ad, err == nil) }() // err: the named result
	}
	kind, err := bodyKindOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	defer body.release()
	frame := getBuffer()
	defer frame.release()
	msg, err := readMessage(kind, body.b, frame, s.envelopeTraceparent(r.Context()))
	if err != nil {
		return err
	}
	if delivery == deliveryRequest {
		return s.deliver(w, r, msg, kind.contentType())
	}
	return s.send(w, r, msg)
}

// deliveryMode returns the ?delivery= query parameter, send by default. A
// request-only server (Config.RequestOnly) defaults to request and refuses
// send.
func deliveryMode(r *http.Request, requestOnly bool) (string, error) {
	if r.URL.RawQuery == "" {
		if requestOnly {
			return deliveryRequest, nil
		}
		return deliverySend, nil
	}
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

// bodyKind is what a POST /messages body holds, by its Content-Type.
type bodyKind int

const (
	bodyJSON   bodyKind = iota // a {"id","message"} envelope
	bodyText                   // UTF-8 text, relayed as is
	bodyBinary                 // bytes, relayed as a binary frame
)

// contentType is what a listener gets with delivery=request.
func (k bodyKind) contentType() string {
	switch k {
	case bodyText:
		return "text/plain; charset=utf-8"
	case bodyBinary:
		return "application/octet-stream"
	}
	return "application/json"
}

// bodyKindOf maps the request's Content-Type to a bodyKind: anything else,
// and JSON or text in a charset other than UTF-8, is a 415.
func bodyKindOf(r *http.Request) (bodyKind, error) {
	mt, charset, ok := mediaType(r.Header.Get("Content-Type"))
	switch {
	case ok && strings.EqualFold(mt, "application/json"):
		if !isUTF8Charset(charset) {
			return 0, newProblem(codeUnsupportedMediaType, "application/json must be UTF-8")
		}
		return bodyJSON, nil
	case ok && strings.EqualFold(mt, "text/plain"):
		if !isUTF8Charset(charset) {
			return 0, newProblem(codeUnsupportedMediaType, "text/plain must be UTF-8")
		}
		return bodyText, nil
	case ok && strings.EqualFold(mt, "application/octet-stream"):
		return bodyBinary, nil
	}
	return 0, newProblem(codeUnsupportedMediaType, "Content-Type must be application/json, text/plain or application/octet-stream")
}

// readMessage makes the relay message of a POST /messages body. For JSON,
// the envelope (with traceparent, if not "") is built in frame; otherwise
// Data aliases body.
func readMessage(kind bodyKind, body []byte, frame *buffer, traceparent string) (relay.Message, error) {
	switch kind {
	case bodyText:
		if !utf8.Valid(body) {
			return relay.Message{}, invalid("text/plain body is not valid UTF-8")
		}
		return relay.Message{ID: newID(), Type: relay.MessageText, Data: body}, nil
	case bodyBinary:
		return relay.Message{ID: newID(), Type: relay.MessageBinary, Data: body}, nil
	}
	var it sendItem
	if err := parseSend(body, &it); err != nil {
		return relay.Message{}, err
	}
	if it.ID == "" {
		it.ID = newID()
	}
	frame.b = appendEnvelope(frame.b[:0], it.ID, traceparent, it.Message)
	return relay.Message{ID: it.ID, Type: relay.MessageText, Data: frame.b}, nil
}

// send hands msg to the relayer, bounded by SendTimeout, and answers 202.
// The timeout travels as msg.Deadline, not as a context.WithTimeout, which
// costs a timer, a cancel context and a registration with the request's
// context on every message (about a tenth of the gateway's CPU per
// message, measured separately with and without).
func (s *Server) send(w http.ResponseWriter, r *http.Request, msg relay.Message) error {
	ctx := r.Context()
	msg.Deadline = time.Now().Add(s.cfg.SendTimeout)
	if err := s.relayer.Send(ctx, msg); err != nil {
		return err
	}
	s.metrics.Relayed(msg.Type.String(), deliverySend, len(msg.Data))
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "message sent",
			slog.String("request_id", requestIDOf(w)), slog.String("id", msg.ID),
			slog.String("type", msg.Type.String()), slog.Int("bytes", len(msg.Data)))
	}
	writeSent(w, msg.ID)
	return nil
}

// jsonContentType is the shared header value of JSON answers. Assigning
// it saves an allocation per response; nothing writes into a header's
// value slice in place (Set replaces it, Add appends to a full slice).
var jsonContentType = []string{"application/json"}

// writeSent answers 202 {"id":…,"status":"sent"}, built in a pooled buffer.
func writeSent(w http.ResponseWriter, id string) {
	buf := getBuffer()
	defer buf.release()
	buf.b = append(buf.b, `{"id":"`...)
	buf.b = append(buf.b, id...)
	buf.b = append(buf.b, "\",\"status\":\"sent\"}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(buf.b)
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
	// A copy: msg.Data is a pooled buffer, and an HTTP transport may still
	// read a request body after it has returned the response.
	body := bytes.Clone(msg.Data)
	resp, err := s.requester.Request(ctx, ListenerRequest{ID: msg.ID, RequestID: requestIDOf(w), ContentType: contentType, Body: body})
	if err != nil {
		if errors.Is(err, ErrListenerBodyTooLarge) {
			return &problem{Code: codeRelayError, Detail: "the listener's response exceeds the gateway's body limit", Err: err}
		}
		return err
	}
	s.metrics.Relayed(msg.Type.String(), deliveryRequest, len(msg.Data))
	writeDelivered(w, msg.ID, resp)
	return nil
}

// writeDelivered answers 200 with the "delivered" document for the
// listener's response resp, built in a pooled buffer byte for byte as
// writeJSON would write it (FuzzAppendDelivered compares the two), without
// encoding/json's reflection and a headers map (BenchmarkDeliveredAnswer).
func writeDelivered(w http.ResponseWriter, id string, resp *ListenerResponse) {
	buf := getBuffer()
	defer buf.release()
	buf.b = appendDelivered(buf.b, id, resp)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.b)
}

// appendDelivered appends {"id","status":"delivered","listener":{"status",
// "headers","body","bodyEncoding"}} for resp as writeJSON encodes it: the
// listener's headers but hop-by-hop ones, canonical names in sorted order,
// values joined with ", "; the body as UTF-8 text when it is valid UTF-8,
// else base64.
func appendDelivered(b []byte, id string, resp *ListenerResponse) []byte {
	b = append(b, `{"id":`...)
	b = relay.AppendJSONString(b, id, false)
	b = append(b, `,"status":"delivered","listener":{"status":`...)
	b = strconv.AppendInt(b, int64(resp.Status), 10)
	b = append(b, `,"headers":{`...)
	b = appendListenerHeaders(b, resp.Header)
	b = append(b, `},"body":`...)
	if utf8.Valid(resp.Body) {
		b = relay.AppendJSONString(b, string(resp.Body), false)
		b = append(b, `,"bodyEncoding":"utf-8"}}`...)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, resp.Body)
		b = append(b, `","bodyEncoding":"base64"}}`...)
	}
	return append(b, '\n')
}

// appendListenerHeaders appends h's fields that are not hop-by-hop as the
// members of a JSON object, by canonical name in sorted order (as
// encoding/json writes a map); of two fields with the same canonical name
// the one whose name sorts last wins.
func appendListenerHeaders(b []byte, h http.Header) []byte {
	type field struct{ canon, name string }
	var arr [16]field
	fields := arr[:0]
	for k := range h {
		if ck := http.CanonicalHeaderKey(k); !hopHeaders[ck] {
			fields = append(fields, field{ck, k})
		}
	}
	slices.SortFunc(fields, func(x, y field) int {
		return cmp.Or(strings.Compare(x.canon, y.canon), strings.Compare(x.name, y.name))
	})
	sep := false
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].canon == f.canon {
			continue // the next one wins
		}
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = relay.AppendJSONString(b, f.canon, false)
		b = append(b, ':')
		b = relay.AppendJSONString(b, strings.Join(h[f.name], ", "), false)
	}
	return b
}

// ErrListenerBodyTooLarge is returned by a Requester when the listener's
// response body exceeds the limit.
var ErrListenerBodyTooLarge = errors.New("api: listener response body too large")
