package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// errResponseTooLarge is returned by the buffering ResponseWriter's Write
// once the body would exceed the listener's ReadLimit.
var errResponseTooLarge = errors.New("relay: response body too large")

// serveInline serves a request that came inline on the control channel and
// answers there if the body fits, else on the request rendezvous.
func (l *Listener) serveInline(s *session, cmd *RequestCommand, body []byte) {
	resp := l.serveHTTP(s.lctx, cmd, body)
	msg, rbody := resp.encode(cmd.ID)
	if len(rbody) <= MaxInlineBody {
		// writeLoop frees resp once it has written it.
		if err := s.post(&outCmd{msg: msg, body: rbody, free: resp}); err != nil {
			l.log.Warn("response lost with the control channel", "id", cmd.ID, "err", err)
		}
		return
	}
	defer resp.free()
	if cmd.Address == "" {
		l.log.Warn("response too large for the control channel and no rendezvous address", "id", cmd.ID, "bytes", len(rbody))
		return
	}
	ctx, cancel := context.WithTimeout(s.lctx, l.cfg.RequestTimeout)
	defer cancel()
	ws, err := l.dialRendezvous(ctx, cmd.Address)
	if err != nil {
		l.log.Warn("request rendezvous failed", "id", cmd.ID, "err", err)
		return
	}
	l.respondAndClose(ctx, ws, cmd.ID, msg, rbody)
}

// serveRendezvous serves an address-only request: dial the rendezvous, read
// the request and its body there, answer there.
func (l *Listener) serveRendezvous(lctx context.Context, cmd *RequestCommand) {
	ctx, cancel := context.WithTimeout(lctx, l.cfg.RequestTimeout)
	defer cancel()
	ws, err := l.dialRendezvous(ctx, cmd.Address)
	if err != nil {
		l.log.Warn("request rendezvous failed", "id", cmd.ID, "err", err)
		return
	}
	req, body, err := readRequest(ctx, ws)
	if err != nil {
		l.log.Warn("reading a request on its rendezvous", "id", cmd.ID, "err", err)
		ws.Close(websocket.StatusPolicyViolation, "bad request")
		return
	}
	if req.ID == "" {
		req.ID = cmd.ID
	}
	resp := l.serveHTTP(lctx, req, body)
	defer resp.free()
	msg, rbody := resp.encode(req.ID)
	l.respondAndClose(ctx, ws, req.ID, msg, rbody)
}

func (l *Listener) dialRendezvous(ctx context.Context, address string) (*websocket.Conn, error) {
	l.rvDials.Add(1)
	dctx, cancel := context.WithTimeout(ctx, l.cfg.AcceptTimeout)
	defer cancel()
	ws, err := dialURL(dctx, address, ActionRequest, &websocket.DialOptions{HTTPClient: l.cfg.HTTPClient}, "")
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(l.cfg.ReadLimit)
	return ws, nil
}

// readRequest reads one request command (and its body message) from a
// rendezvous; the caller is its only reader.
func readRequest(ctx context.Context, ws *websocket.Conn) (*RequestCommand, []byte, error) {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return nil, nil, err
		}
		if typ != websocket.MessageText {
			continue // a stray empty body message
		}
		m, err := DecodeControlMessage(data)
		if errors.Is(err, ErrUnknownCommand) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if m.Request == nil || !m.Request.Inline() {
			return nil, nil, fmt.Errorf("%w: expected a request with a method", ErrBadCommand)
		}
		var body []byte
		if m.Request.HasBody() {
			if _, body, err = ws.Read(ctx); err != nil {
				return nil, nil, err
			}
		}
		return m.Request, body, nil
	}
}

// respondAndClose writes the response on a rendezvous and closes it
// normally, as Microsoft's .NET listener does.
func (l *Listener) respondAndClose(ctx context.Context, ws *websocket.Conn, id string, msg, body []byte) {
	if err := writeCommand(ctx, ws, msg, body); err != nil {
		l.log.Warn("writing a response on its rendezvous", "id", id, "err", err)
		ws.CloseNow()
		return
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// serveHTTP turns cmd into an *http.Request, runs HTTPHandler with a
// buffering ResponseWriter and returns the response. Handler panics give
// 500 and an unparsable request 400, as an HTTP server would.
func (l *Listener) serveHTTP(lctx context.Context, cmd *RequestCommand, body []byte) *bufferedResponse {
	w := newBufferedResponse(l.cfg.ReadLimit)
	if l.cfg.HTTPHandler == nil {
		w.WriteHeader(http.StatusNotImplemented)
		return w
	}
	ctx, cancel := context.WithTimeout(lctx, l.cfg.RequestTimeout)
	defer cancel()
	r, err := l.newRequest(ctx, cmd, body)
	if err != nil {
		l.log.Warn("unusable request", "id", cmd.ID, "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return w
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					l.log.Error("HTTP handler panicked", "id", cmd.ID, "panic", fmt.Sprint(p))
				}
				w.reset(w.limit)
				w.WriteHeader(http.StatusInternalServerError)
			}
		}()
		l.cfg.HTTPHandler.ServeHTTP(w, r)
	}()
	if r.Method == http.MethodHead || w.code == http.StatusNoContent || w.code == http.StatusNotModified {
		w.body.Reset() // these responses have no body, as net/http enforces
	}
	if w.overflow {
		l.log.Warn("HTTP response larger than the read limit", "id", cmd.ID, "limit", l.cfg.ReadLimit)
		w.reset(w.limit)
		w.WriteHeader(http.StatusInternalServerError)
	}
	return w
}

func (l *Listener) newRequest(ctx context.Context, cmd *RequestCommand, body []byte) (*http.Request, error) {
	target := cmd.RequestTarget
	if target == "" {
		target = "/"
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("requestTarget: %w", err)
	}
	if !validMethod(cmd.Method) {
		return nil, fmt.Errorf("invalid method")
	}
	h := make(http.Header, len(cmd.RequestHeaders))
	vals := make([]string, 0, len(cmd.RequestHeaders)) // one backing array for every value
	for k, v := range cmd.RequestHeaders {
		vals = append(vals, v)
		h[textproto.CanonicalMIMEHeaderKey(k)] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	host := h.Get("Host")
	delete(h, "Host")
	if host == "" {
		host = l.cfg.Credentials.Host
	}
	// A value: WithContext copies it to the heap once.
	r := http.Request{
		Method:        cmd.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: int64(len(body)),
		Host:          host,
		RequestURI:    target,
	}
	if len(body) > 0 {
		r.Body = &requestBody{Reader: *bytes.NewReader(body)}
	}
	if re := cmd.RemoteEndpoint; re != nil && re.Address != "" {
		r.RemoteAddr = net.JoinHostPort(re.Address, strconv.Itoa(re.Port))
	}
	return r.WithContext(ctx), nil
}

func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// requestBody is a request's body: one allocation where io.NopCloser
// around a bytes.Reader takes two.
type requestBody struct{ bytes.Reader }

func (*requestBody) Close() error { return nil }

// bufferedResponse is the http.ResponseWriter given to HTTPHandler: it
// buffers the whole response, up to limit bytes of body. It is used by one
// handler goroutine, then by whoever writes the encoded response, which
// frees it for the next request.
type bufferedResponse struct {
	header      http.Header
	code        int
	body        bytes.Buffer
	limit       int64
	overflow    bool
	wroteHeader bool

	// Kept across requests, with header and body: encode's buffers.
	msg     []byte
	headers map[string]string
}

// bufferedResponses holds freed responses, with their buffers.
var bufferedResponses = sync.Pool{New: func() any {
	return &bufferedResponse{header: http.Header{}, headers: map[string]string{}}
}}

// maxPooledResponse bounds the body buffer a freed response keeps.
const maxPooledResponse = 64 << 10

func newBufferedResponse(limit int64) *bufferedResponse {
	w := bufferedResponses.Get().(*bufferedResponse)
	w.limit = limit
	return w
}

// reset makes w a fresh response, keeping its buffers.
func (w *bufferedResponse) reset(limit int64) {
	clear(w.header)
	w.body.Reset()
	w.code, w.limit, w.overflow, w.wroteHeader = 0, limit, false, false
}

// free hands w, and the command and body that encode returned, back for
// reuse; nothing may use them afterwards.
func (w *bufferedResponse) free() {
	if w.body.Cap() > maxPooledResponse {
		return
	}
	w.reset(0)
	bufferedResponses.Put(w)
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(code int) {
	if w.wroteHeader || code < 100 || code > 999 {
		return
	}
	w.code, w.wroteHeader = code, true
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if int64(w.body.Len())+int64(len(p)) > w.limit {
		w.overflow = true
		return 0, errResponseTooLarge
	}
	return w.body.Write(p)
}

// Flush is a no-op: the response is sent when the handler returns.
func (w *bufferedResponse) Flush() {}

// encode returns the response command and the body (nil when empty).
func (w *bufferedResponse) encode(requestID string) (msg, body []byte) {
	w.WriteHeader(http.StatusOK)
	if _, ok := w.header["Content-Type"]; !ok && w.body.Len() > 0 {
		// Like net/http; a nil Content-Type value suppresses this.
		w.header.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
	}
	rc := &ResponseCommand{
		RequestID:         requestID,
		StatusCode:        StatusCode(w.code),
		StatusDescription: http.StatusText(w.code),
		Body:              w.body.Len() > 0,
	}
	if len(w.header) > 0 {
		clear(w.headers)
		rc.ResponseHeaders = w.headers
		for k, v := range w.header {
			if len(v) > 0 && !strings.EqualFold(k, "Content-Length") {
				rc.ResponseHeaders[k] = strings.Join(v, ", ")
			}
		}
	}
	w.msg, _ = AppendControlMessage(w.msg[:0], &ControlMessage{Response: rc})
	msg = w.msg
	if w.body.Len() > 0 {
		body = w.body.Bytes()
	}
	return msg, body
}
