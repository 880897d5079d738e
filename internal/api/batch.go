package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/relaygate/relaygate/internal/relay"
)

// Batch result statuses.
const (
	batchSent   = "sent"
	batchFailed = "failed"
)

// batchResult is the outcome of one message of a batch. Problem is set
// only when Status is "failed"; a failed message was not written to the
// relay and is safe to send again.
type batchResult struct {
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Problem *problemBody `json:"problem,omitempty"`
}

// batchResponse is the 200 answer of POST /messages:batch: one result per
// message, in the order they were posted.
type batchResponse struct {
	Sent    int           `json:"sent"`
	Failed  int           `json:"failed"`
	Results []batchResult `json:"results"`
}

// handleBatch handles "POST /messages:batch": {"messages":[{"id"?,
// "message"}, …]} as application/json, or one such item per line as
// application/x-ndjson. Every item is checked before any is relayed (one
// invalid item is a 400 naming it, #/messages/7/message); then each is
// relayed as one text frame, in order, and the answer lists what happened
// to each. After the first failure the rest are not sent (so the listener
// never sees a gap in the order) and are reported failed.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) error {
	ad, err := s.admit(w, r)
	if err != nil {
		return err
	}
	var sent bool
	defer func() { s.admission.done(ad, sent) }()
	ndjson, err := batchKindOf(r)
	if err != nil {
		return err
	}
	body, err := readBody(r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	defer body.release()
	var items []sendItem
	if ndjson {
		items, err = parseBatchNDJSON(body.b, s.cfg.MaxBatch)
	} else {
		items, err = parseBatchJSON(body.b, s.cfg.MaxBatch)
	}
	if err != nil {
		return err
	}
	for i := range items {
		if items[i].ID == "" {
			items[i].ID = newID()
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SendTimeout)
	defer cancel()
	resp := s.sendBatch(ctx, requestIDOf(w), items)
	sent = resp.Sent > 0
	return writeJSON(w, http.StatusOK, resp)
}

// batchKindOf accepts application/json and application/x-ndjson in UTF-8.
func batchKindOf(r *http.Request) (ndjson bool, err error) {
	mt, charset, ok := mediaType(r.Header.Get("Content-Type"))
	json := ok && strings.EqualFold(mt, "application/json")
	ndjson = ok && strings.EqualFold(mt, "application/x-ndjson")
	switch {
	case !json && !ndjson:
		return false, newProblem(codeUnsupportedMediaType, "Content-Type must be application/json or application/x-ndjson")
	case !isUTF8Charset(charset):
		return false, newProblem(codeUnsupportedMediaType, "a batch must be UTF-8")
	}
	return ndjson, nil
}

// sendBatch relays items in order through one reused frame buffer.
func (s *Server) sendBatch(ctx context.Context, rid string, items []sendItem) batchResponse {
	frame := getBuffer()
	defer frame.release()
	resp := batchResponse{Results: make([]batchResult, len(items))}
	var stop *problem
	traceparent := s.envelopeTraceparent(ctx)
	for i, it := range items {
		res := &resp.Results[i]
		res.ID, res.Status = it.ID, batchSent
		if stop != nil {
			res.Status, res.Problem = batchFailed, problemDocument(&problem{Code: stop.Code, Detail: stop.Detail + "; not sent because an earlier message of the batch failed (safe to retry)"}, rid)
			resp.Failed++
			continue
		}
		frame.b = appendEnvelope(frame.b[:0], it.ID, traceparent, it.Message)
		if err := s.relayer.Send(ctx, relay.Message{ID: it.ID, Type: relay.MessageText, Data: frame.b}); err != nil {
			stop = problemFor(err)
			s.log.LogAttrs(ctx, slog.LevelWarn, "batch stopped", slog.String("request_id", rid),
				slog.Int("index", i), slog.String("code", stop.Code), slog.String("err", err.Error()))
			s.metrics.Problem(stop.Code)
			res.Status, res.Problem = batchFailed, problemDocument(stop, rid)
			resp.Failed++
			continue
		}
		s.metrics.Relayed(relay.MessageText.String(), deliverySend, len(frame.b))
		resp.Sent++
	}
	return resp
}

// problemDocument is p as the RFC 9457 document writeProblem would send.
func problemDocument(p *problem, rid string) *problemBody {
	c, ok := codes[p.Code]
	if !ok {
		p, c = &problem{Code: codeInternal, Detail: "internal error"}, codes[codeInternal]
	}
	return &problemBody{Type: problemTypePrefix + p.Code, Title: c.title, Status: c.status, Detail: p.Detail, Code: p.Code, RequestID: rid, Errors: p.Errors}
}

// parseBatchJSON parses {"messages":[…]} with at most max items.
func parseBatchJSON(body []byte, max int) ([]sendItem, error) {
	s := jsonScanner{b: body}
	if s.peek() != '{' {
		if _, err := s.value(); err != nil {
			return nil, jsonErr(err)
		}
		return nil, invalid("request body must be a JSON object")
	}
	var items []sendItem
	var fp fieldProblems
	saw := false
	err := s.members(func(name []byte) error {
		switch {
		case string(name) != "messages":
			fp.key(joinPointer("#", string(name)), unknownField(string(name), "messages"))
		case saw:
			fp.key("#/messages", "appears more than once")
		default:
			saw = true
			var err error
			items, err = s.batchItems(max, &fp)
			return err
		}
		_, err := s.value()
		return err
	})
	if err != nil {
		return nil, jsonErr(err)
	}
	if !s.atEnd() {
		return nil, invalid("request body must hold exactly one JSON value; found data after it")
	}
	if !saw {
		fp.value("#/messages", "is required")
	}
	return items, fp.err()
}

// batchItems parses the "messages" array.
func (s *jsonScanner) batchItems(max int, fp *fieldProblems) ([]sendItem, error) {
	if s.peek() != '[' {
		_, err := s.value()
		fp.value("#/messages", "must be a JSON array")
		return nil, err
	}
	s.i++
	var items []sendItem
	if s.peek() == ']' {
		s.i++
		fp.value("#/messages", "must hold at least one message")
		return nil, nil
	}
	for {
		if len(items) == max {
			return nil, tooManyItems(max)
		}
		var it sendItem
		if err := s.item("#/messages/"+strconv.Itoa(len(items)), &it, fp); err != nil {
			return nil, err
		}
		items = append(items, it)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return items, nil
		default:
			return nil, s.fail(s.i)
		}
	}
}

func tooManyItems(max int) *problem {
	return invalid("request body is invalid", fieldError{Pointer: "#/messages", Detail: "must hold at most " + strconv.Itoa(max) + " messages"})
}

// parseBatchNDJSON parses one item per line; blank lines are skipped. Item
// n (the n-th non-blank line, from 0) is reported as #/messages/n, as in a
// JSON batch.
func parseBatchNDJSON(body []byte, max int) ([]sendItem, error) {
	var items []sendItem
	var fp fieldProblems
	line := 0
	for rest := body; len(rest) > 0; {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte{'\n'})
		line++
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if len(items) == max {
			return nil, tooManyItems(max)
		}
		s := jsonScanner{b: l}
		var it sendItem
		err := s.item("#/messages/"+strconv.Itoa(len(items)), &it, &fp)
		if err == nil && !s.atEnd() {
			err = s.fail(s.i)
		}
		if se, ok := err.(*syntaxError); ok {
			return nil, invalid("line " + strconv.Itoa(line) + " is not valid JSON (at byte " + strconv.Itoa(se.off) + " of the line)")
		} else if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	if len(items) == 0 && len(fp.keys)+len(fp.values) == 0 {
		return nil, invalid("request body holds no messages")
	}
	return items, fp.err()
}
