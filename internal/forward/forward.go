package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaygate/relaygate/internal/relay"
)

// Defaults for zero Config fields.
const (
	defaultTimeout      = 30 * time.Second
	defaultMaxBodyBytes = 1 << 20
	// maxDrain bounds how much of a local service's answer to a message POST
	// is read (and discarded) so the connection can be reused.
	maxDrain = 64 << 10
)

// Headers set on every message POSTed to the local service.
const (
	HeaderConnection  = "Relaygate-Connection"
	HeaderMessageType = "Relaygate-Message-Type"
)

// Conn is the part of a relayed WebSocket connection that Handler uses;
// *relay.ListenerConn satisfies it.
type Conn interface {
	ID() string
	Read(ctx context.Context) (relay.MessageType, []byte, error)
}

// Config configures a Handler.
type Config struct {
	// Target is the local service. Nil means print only: WebSocket messages
	// are printed, and HTTP requests are printed and answered 200 with a
	// receipt.
	Target *url.URL
	// StripPrefix is removed from relayed request paths before they are
	// joined to Target's path: "/{entity}" turns "/hc/api/x" into "/api/x".
	StripPrefix string
	// Timeout bounds one forwarded request (until its response body is
	// copied) or one message POST. Zero means 30s.
	Timeout time.Duration
	// MaxBodyBytes bounds an HTTP request body in print mode (413 beyond)
	// and a reply sent back on a WebSocket. Zero means 1 MiB.
	MaxBodyBytes int64
	// Transport carries forwarded requests and message POSTs; nil means a
	// clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Now is the clock of the printed lines; nil means time.Now.
	Now func() time.Time
	// TracerProvider, if set, records a span per message and relayed
	// request, continuing the sender's trace (see tracing.go); nil records
	// none. Trace context is passed on to the target either way.
	TracerProvider trace.TracerProvider
}

// Line is one JSON line printed on the output, for a WebSocket message
// (Connection, Type "text" or "binary") or, in print mode, an HTTP request
// (Request, Type "http", Method, Target). The payload is in Text when it is
// valid UTF-8 text and in Base64 otherwise (binary frames always).
type Line struct {
	Time       time.Time `json:"time"`
	Connection string    `json:"connection,omitempty"`
	Request    string    `json:"request,omitempty"`
	Type       string    `json:"type"`
	Method     string    `json:"method,omitempty"`
	Target     string    `json:"target,omitempty"`
	Text       *string   `json:"text,omitempty"`
	Base64     *[]byte   `json:"base64,omitempty"`
}

// Receipt is the JSON body answering an HTTP request in print mode.
type Receipt struct {
	Status   string    `json:"status"` // always "received"
	Request  string    `json:"request"`
	Method   string    `json:"method"`
	Target   string    `json:"target"`
	Bytes    int       `json:"bytes"`
	Received time.Time `json:"received"`
}

// Handler prints and forwards what a relay listener receives. ServeConn and
// ServeHTTP are safe for concurrent use; lines from concurrent connections
// are written whole, one Write call each, never interleaved.
type Handler struct {
	// Static after construction.
	cfg    Config
	log    *slog.Logger
	client *http.Client
	proxy  *httputil.ReverseProxy
	tracer trace.Tracer // nil: not tracing

	// Guarded by outMu.
	outMu sync.Mutex
	out   io.Writer
}

// New returns a Handler writing lines to out and logging to log.
func New(cfg Config, out io.Writer, log *slog.Logger) (*Handler, error) {
	if cfg.Target != nil && (cfg.Target.Scheme != "http" && cfg.Target.Scheme != "https" || cfg.Target.Host == "") {
		return nil, errors.New("forward: target must be an absolute http or https URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = defaultMaxBodyBytes
	}
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = cfg.Timeout
		cfg.Transport = t
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:    cfg,
		log:    log,
		out:    out,
		client: &http.Client{Transport: cfg.Transport, Timeout: cfg.Timeout},
	}
	if cfg.TracerProvider != nil {
		h.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if cfg.Target != nil {
		h.proxy = &httputil.ReverseProxy{
			Rewrite:      h.rewrite,
			Transport:    cfg.Transport,
			ErrorHandler: h.proxyError,
			ModifyResponse: func(resp *http.Response) error {
				// The path only: the query may carry a key.
				log.Info("request forwarded", "method", resp.Request.Method, "path", resp.Request.URL.Path, "status", resp.StatusCode)
				return nil
			},
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return h, nil
}

// ServeConn prints every message of c (and POSTs it to the target, in
// order, one at a time, answering on c when it is a ReplyWriter) until c's
// Read fails: the connection closed, or ctx ended. It does not close c.
func (h *Handler) ServeConn(ctx context.Context, c Conn) {
	id := c.ID()
	log := h.log.With("connection", id)
	log.Debug("connection accepted")
	n := 0
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			log.Info("connection ended", "messages", n, "reason", err.Error())
			return
		}
		n++
		line := Line{Time: h.cfg.Now().UTC(), Connection: id, Type: typ.String()}
		if typ == relay.MessageText {
			setPayload(&line, data)
		} else {
			b := data
			line.Base64 = &b
		}
		h.print(&line)
		if log.Enabled(ctx, slog.LevelDebug) {
			log.LogAttrs(ctx, slog.LevelDebug, "message", slog.String("type", typ.String()), slog.Int("bytes", len(data)))
		}
		mctx, span := h.traceMessage(ctx, id, typ, data)
		if h.cfg.Target != nil {
			h.reply(ctx, log, c, h.post(mctx, log, id, typ, data))
		}
		span.End()
	}
}

// setPayload puts data in Text when it is valid UTF-8, else in Base64, so
// the line is lossless.
func setPayload(l *Line, data []byte) {
	if utf8.Valid(data) {
		s := string(data)
		l.Text = &s
		return
	}
	b := data
	l.Base64 = &b
}

// print writes l as one line.
func (h *Handler) print(l *Line) {
	buf := getBuffer()
	defer putBuffer(buf)
	b, err := appendLine((*buf)[:0], l)
	if err != nil {
		_, err = json.Marshal(*l) // for its error (a copy: l does not escape)
		h.log.Error("encode line", "err", err)
		return
	}
	b = append(b, '\n')
	*buf = b
	h.outMu.Lock()
	defer h.outMu.Unlock()
	if _, err := h.out.Write(b); err != nil {
		h.log.Error("write output", "err", err)
	}
}

// post sends one message to the target and returns what to send back on
// the WebSocket (nil: nothing). Failures are logged, not fatal: the
// connection keeps being read.
func (h *Handler) post(ctx context.Context, log *slog.Logger, id string, typ relay.MessageType, data []byte) *wsReply {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.Target.String(), bytes.NewReader(data))
	if err != nil {
		log.Error("forward message", "err", err)
		return errorReply(http.StatusBadGateway, "forward_failed", "the local service could not be reached")
	}
	ct := "application/octet-stream"
	if typ == relay.MessageText {
		ct = "text/plain; charset=utf-8"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set(HeaderConnection, id)
	req.Header.Set(HeaderMessageType, typ.String())
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := h.client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, whose query may hold a key
		// (?code=… of a function app): log the cause and the shown form.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		log.Warn("forward message", "target", Shown(h.cfg.Target), "err", err)
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return errorReply(http.StatusGatewayTimeout, "forward_timeout", "the local service did not answer in time")
		}
		return errorReply(http.StatusBadGateway, "forward_failed", "the local service could not be reached")
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		log.Warn("forward message: local service answered an error", "status", resp.StatusCode)
		return errorReply(resp.StatusCode, "local_error", fmt.Sprintf("the local service answered %d", resp.StatusCode))
	}
	log.Debug("message forwarded", "status", resp.StatusCode)
	return h.readReply(log, resp)
}

// Shown returns u for logs: scheme, host and path, with a query (which may
// carry a key) reduced to "?…".
func Shown(u *url.URL) string {
	if u == nil {
		return ""
	}
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// ServeHTTP handles one relayed HTTP request: proxied to the target, or
// printed and answered with a Receipt in print mode.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, span := h.traceRequest(r)
	defer span.End()
	if h.proxy != nil {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		h.proxy.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	id := relay.NewID()
	bodyBuf := getBuffer()
	defer putBuffer(bodyBuf)
	read := bytes.NewBuffer((*bodyBuf)[:0])
	_, err := read.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	body := read.Bytes()
	*bodyBuf = body
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
			return
		}
		h.log.Warn("read relayed request body", "request", id, "err", err)
		writeProblem(w, http.StatusBadRequest, "bad_request", "request body could not be read")
		return
	}
	now := h.cfg.Now().UTC()
	line := Line{Time: now, Request: id, Type: "http", Method: r.Method, Target: r.URL.RequestURI()}
	if len(body) > 0 {
		setPayload(&line, body)
	}
	h.print(&line)
	if ctx := context.Background(); h.log.Enabled(ctx, slog.LevelInfo) { // Info's context, without boxing
		h.log.LogAttrs(ctx, slog.LevelInfo, "request received", slog.String("request", id), slog.String("method", r.Method),
			slog.String("target", r.URL.Path), slog.Int("bytes", len(body)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	rc := Receipt{Status: "received", Request: id, Method: r.Method, Target: line.Target, Bytes: len(body), Received: now}
	b, err := appendReceipt((*bodyBuf)[:0], &rc) // the body is printed: its buffer is free
	if err != nil {
		_ = json.NewEncoder(w).Encode(rc) // fails as appendReceipt did
		return
	}
	*bodyBuf = b
	_, _ = w.Write(b)
}

// rewrite maps a relayed request onto the target: the prefix is stripped,
// the rest joined to the target's path, the queries merged, and Host set to
// the target's.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	t := h.cfg.Target
	rest := pr.In.URL.Path
	if p := strings.TrimSuffix(h.cfg.StripPrefix, "/"); p != "" {
		if after, ok := strings.CutPrefix(rest, p); ok && (after == "" || after[0] == '/') {
			rest = after
		}
	}
	path := t.Path
	if rest != "" && rest != "/" || path == "" {
		path = strings.TrimSuffix(t.Path, "/") + rest
	}
	if path == "" {
		path = "/"
	}
	u := *pr.Out.URL
	u.Scheme, u.Host, u.Path, u.RawPath = t.Scheme, t.Host, path, ""
	switch {
	case t.RawQuery == "":
	case u.RawQuery == "":
		u.RawQuery = t.RawQuery
	default:
		u.RawQuery = t.RawQuery + "&" + u.RawQuery
	}
	pr.Out.URL = &u
	pr.Out.Host = ""
	traceContext.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
	pr.SetXForwarded()
}

// proxyError answers a request the local service did not answer: 504 on a
// timeout, 502 otherwise. The cause is logged, never sent.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, detail := http.StatusBadGateway, "forward_failed", "the local service could not be reached"
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		status, code, detail = http.StatusGatewayTimeout, "forward_timeout", "the local service did not answer in time"
	}
	h.log.Warn("forward request", "method", r.Method, "target", r.URL.Path, "status", status, "err", err)
	writeProblem(w, status, code, detail)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// problemTypePrefix + code is each problem's "type" URI: the same scheme as
// the gateway's (internal/api), so clients see one scheme everywhere.
const problemTypePrefix = "urn:relaygate:problem:"

// writeProblem writes an RFC 9457 problem for errors the listener itself
// produces (as opposed to the local service's own answers, relayed as is).
func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   problemTypePrefix + code,
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
		"code":   code,
	})
}
