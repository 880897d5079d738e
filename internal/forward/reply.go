package forward

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/relaygate/relaygate/internal/relay"
)

// ReplyWriter is the optional part of a Conn that lets ServeConn answer on
// the same WebSocket; *relay.ListenerConn implements it.
//
// With a target, each message's POST is answered back on its connection,
// in order, before the next message is read, so a sender can do
// request/response over one WebSocket:
//
//   - a 2xx answer with a non-empty body is sent back as one message: text
//     when its Content-Type is text/*, JSON, XML or JavaScript and the body
//     is valid UTF-8, binary otherwise (also when Content-Type is missing);
//   - a 2xx answer with an empty body (204, 202 …) sends nothing;
//   - a failure sends one text message {"error":{"status":S,"code":C,"detail":D}}
//     — the local service's status with code "local_error" for a non-2xx
//     answer (its body is not relayed), 502 "forward_failed" when it could
//     not be reached, 504 "forward_timeout" when it did not answer in time,
//     502 "reply_too_large" when the body exceeds Config.MaxBodyBytes —
//     and is logged. A sender that cannot tell such a frame from its own
//     JSON replies should have the service answer 2xx.
type ReplyWriter interface {
	Write(ctx context.Context, typ relay.MessageType, data []byte) error
}

// wsReply is one message to send back.
type wsReply struct {
	typ  relay.MessageType
	data []byte
}

// replyError is the body of an error reply.
type replyError struct {
	Error struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
	} `json:"error"`
}

func errorReply(status int, code, detail string) *wsReply {
	var e replyError
	e.Error.Status, e.Error.Code, e.Error.Detail = status, code, detail
	b, _ := json.Marshal(e) // ints and strings only
	return &wsReply{typ: relay.MessageText, data: b}
}

// readReply reads a 2xx answer's body (up to MaxBodyBytes) as the reply.
func (h *Handler) readReply(log *slog.Logger, resp *http.Response) *wsReply {
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.MaxBodyBytes+1))
	switch {
	case err != nil:
		log.Warn("forward message: reading the local service's answer", "err", err)
		return errorReply(http.StatusBadGateway, "forward_failed", "the local service's answer could not be read")
	case int64(len(body)) > h.cfg.MaxBodyBytes:
		log.Warn("forward message: the local service's answer is too large", "limit", h.cfg.MaxBodyBytes)
		return errorReply(http.StatusBadGateway, "reply_too_large", "the local service's answer exceeds the listener's message limit")
	case len(body) == 0:
		return nil
	}
	typ := relay.MessageBinary
	if textual(resp.Header.Get("Content-Type")) && utf8.Valid(body) {
		typ = relay.MessageText
	}
	return &wsReply{typ: typ, data: body}
}

// textual reports whether a Content-Type names text.
func textual(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), mt == "application/json", mt == "application/xml",
		mt == "application/javascript", strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	return false
}

// reply writes r back on c, if c can be written to and there is a reply.
func (h *Handler) reply(ctx context.Context, log *slog.Logger, c Conn, r *wsReply) {
	w, ok := c.(ReplyWriter)
	if !ok || r == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	if err := w.Write(wctx, r.typ, r.data); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("reply not sent", "err", err)
		return
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.LogAttrs(ctx, slog.LevelDebug, "reply sent", slog.String("type", r.typ.String()), slog.Int("bytes", len(r.data)))
	}
}
