package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

// pendingRequest is an HTTP request-mode sender waiting for its listener's
// response, which arrives on the control channel (respCh) or on a request
// rendezvous the listener dials (rvCh).
type pendingRequest struct {
	id string
	cc *controlChannel

	respCh chan ctrlResponse    // buffer 1
	rvCh   chan *websocket.Conn // buffer 1
	failCh chan *wireError      // buffer 1

	// Owned by the sender's goroutine (serveRequestMode).
	rv *websocket.Conn // the request rendezvous, once the listener dialed it

	// Guarded by Server.mu.
	rvTaken  bool // the rendezvous address was used
	finished bool // the sender is done; nothing more is delivered
}

// ctrlResponse is a response read from a control channel.
type ctrlResponse struct {
	cmd  *relay.ResponseCommand
	body []byte
}

// fail ends the request with e unless something else already did.
func (p *pendingRequest) fail(e *wireError) {
	select {
	case p.failCh <- e:
	default:
	}
}

// deliverResponse hands a response that arrived on control channel c to
// its waiting sender. Responses for unknown or finished requests, and for
// requests offered on another control channel, are dropped: a request id
// is bound to the channel it was offered on.
func (s *Server) deliverResponse(c *controlChannel, cmd *relay.ResponseCommand, body []byte) {
	s.mu.Lock()
	p := s.pendingReq[cmd.RequestID]
	s.mu.Unlock()
	if p == nil || p.cc != c {
		c.log.Debug("response for an unknown request dropped")
		return
	}
	select {
	case p.respCh <- ctrlResponse{cmd, body}:
	default:
	}
}

// failRequestsOf fails every request waiting on control channel c with 502.
func (s *Server) failRequestsOf(c *controlChannel) {
	s.mu.Lock()
	var ps []*pendingRequest
	for _, p := range s.pendingReq {
		if p.cc == c {
			ps = append(ps, p)
		}
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.fail(&wireError{code: http.StatusBadGateway, reason: "unavailable", text: "The listener disconnected before responding."})
	}
}

// hopHeaders are never forwarded in either direction (RFC 7230 connection
// headers, as in §7 of the protocol notes).
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Close": true, "Content-Length": true,
}

// forwardHeaders flattens h for the listener or the sender: hop-by-hop
// headers (and those named in Connection, and drop) left out, values
// joined with ", ".
func forwardHeaders(h http.Header, drop ...string) map[string]string {
	var named map[string]bool // fields named in Connection; rare
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if named == nil {
				named = map[string]bool{}
			}
			named[http.CanonicalHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if hopHeaders[k] || named[k] || dropped(k, drop) {
			continue
		}
		if len(v) == 1 {
			out[k] = v[0]
		} else {
			out[k] = strings.Join(v, ", ")
		}
	}
	return out
}

// dropped reports whether the canonical header name k is one of drop (in
// any case).
func dropped(k string, drop []string) bool {
	for _, d := range drop {
		if strings.EqualFold(k, d) {
			return true
		}
	}
	return false
}

// addVia appends "1.1 host" to an existing Via value.
func addVia(existing, host string) string {
	v := "1.1 " + sanitizeHost(host)
	if existing != "" {
		return existing + ", " + v
	}
	return v
}

// serveRequestMode handles "ANY /{path}[/suffix][?query]": HTTP request
// mode. The request goes to one listener, inline on its control channel
// when the body is known and ≤ 64 kB, else through a request rendezvous;
// the listener's response comes back with its statusDescription as the
// reason phrase. The steps: admit, build the command, register it as
// pending, send it, wait for the answer, write it.
func (s *Server) serveRequestMode(w http.ResponseWriter, r *http.Request, rawPath string) {
	e, cc, anonymous, ok := s.admitRequest(w, r, rawPath)
	if !ok {
		return
	}
	cmd := s.requestCommand(r, rawPath, e.name, cc, anonymous)
	p, ok := s.registerRequest(cmd.ID, cc)
	if !ok {
		s.writeStatus(w, r, e.name, errShuttingDown)
		return
	}
	defer s.finishRequest(p)

	// A timer rather than a context with a deadline: the sender's own
	// context already says when it went away, and a derived one costs a
	// registration with it for every request.
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	expiry := time.NewTimer(s.cfg.RequestTimeout)
	defer expiry.Stop()
	inline := r.ContentLength >= 0 && r.ContentLength <= relay.MaxInlineBody
	if we := sendRequest(r.Context(), r, p, cmd, inline); we != nil {
		s.writeStatus(w, r, e.name, we)
		return
	}
	resp, we := s.awaitResponse(r, p, cmd, inline, deadline, expiry.C)
	if we == errSenderGone {
		return
	}
	if we != nil {
		s.writeStatus(w, r, e.name, we)
		return
	}
	s.writeListenerResponse(w, r, resp, p.rv)
}

// admitRequest checks a request-mode sender: no upgrade, a valid token, a
// body within the limit, and a listener to take it. On failure it has
// written the status and returns ok false.
func (s *Server) admitRequest(w http.ResponseWriter, r *http.Request, rawPath string) (e *entity, cc *controlChannel, anonymous, ok bool) {
	if r.Method == http.MethodConnect || r.Header.Get("Upgrade") != "" {
		s.writeStatus(w, r, "", &wireError{code: http.StatusBadRequest, reason: "bad_request",
			text: "Bad Request. Upgrades and CONNECT are not supported in HTTP request mode; WebSockets use /$hc/."})
		return nil, nil, false, false
	}
	res, anonymous, ok := s.admitSender(w, r, rawPath, true)
	if !ok {
		return nil, nil, false, false
	}
	if r.ContentLength > s.cfg.MaxMessageBytes {
		s.writeStatus(w, r, res.name, &wireError{code: http.StatusRequestEntityTooLarge, reason: "too_large",
			text: fmt.Sprintf("Request Entity Too Large. The body exceeds %d bytes.", s.cfg.MaxMessageBytes)})
		return nil, nil, false, false
	}
	e = s.ensure(res)
	cc, we := s.pickListener(e, r.Header)
	if we == nil && cc == nil {
		we = &wireError{code: http.StatusBadGateway, reason: "no_listener", text: "Bad Gateway. The request could not be routed to any listener."}
	}
	if we != nil {
		// AllowedListeners/DisallowedListeners mismatches stay 404, as in
		// the .NET HybridRequestTests.AllowedListeners test.
		s.writeStatus(w, r, e.name, we)
		return nil, nil, false, false
	}
	return e, cc, anonymous, true
}

// requestCommand builds the full request command for r: forwarded headers
// (without the sender's token, and Authorization only if it carried the
// token), Host, Via, the filtered target and the rendezvous address.
func (s *Server) requestCommand(r *http.Request, rawPath, entityName string, cc *controlChannel, anonymous bool) *relay.RequestCommand {
	drop := []string{relay.HeaderAuthorization}
	if _, src := findToken(r, true); src == tokenAuthorization && !anonymous {
		drop = append(drop, "Authorization")
	}
	hdrs := forwardHeaders(r.Header, drop...)
	hdrs["Host"] = r.Host
	hdrs["Via"] = addVia(r.Header.Get("Via"), r.Host)
	target := rawPath
	if q := filterQuery(r.URL.RawQuery); q != "" {
		target += "?" + q
	}
	id := s.nextID("")
	addr := url.URL{Scheme: cc.scheme, Host: cc.hostForAddress(), Path: "/$hc/" + entityName,
		RawPath: "/$hc/" + escapePathSegments(entityName), RawQuery: relay.QueryAction + "=request&" + relay.QueryID + "=" + url.QueryEscape(id)}
	ep := remoteEndpoint(r)
	return &relay.RequestCommand{
		Address: addr.String(), ID: id, RequestTarget: target, Method: r.Method,
		RemoteEndpoint: &ep, RequestHeaders: hdrs,
	}
}

// registerRequest makes id a pending request, so the listener's response
// or rendezvous finds its sender; ok is false once the server is closed.
func (s *Server) registerRequest(id string, cc *controlChannel) (p *pendingRequest, ok bool) {
	p = &pendingRequest{id: id, cc: cc, respCh: make(chan ctrlResponse, 1), rvCh: make(chan *websocket.Conn, 1), failCh: make(chan *wireError, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false
	}
	s.pendingReq[id] = p
	s.mu.Unlock()
	s.m.PendingChanged(1)
	return p, true
}

// finishRequest unregisters p and closes the rendezvous it used or that
// arrived too late.
func (s *Server) finishRequest(p *pendingRequest) {
	s.mu.Lock()
	delete(s.pendingReq, p.id)
	p.finished = true
	s.mu.Unlock()
	select {
	case ws := <-p.rvCh:
		s.untrack(ws)
	default:
	}
	if p.rv != nil {
		p.rv.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(closeWait))
		s.untrack(p.rv)
	}
	s.m.PendingChanged(-1)
}

// sendRequest queues the request for the listener's control channel: the
// full command with its body when inline, else only the rendezvous
// address. It does not wait for the write: a write that fails later fails
// p with the same 502.
func sendRequest(ctx context.Context, r *http.Request, p *pendingRequest, cmd *relay.RequestCommand, inline bool) *wireError {
	undelivered := func(err error) *wireError {
		return &wireError{code: http.StatusBadGateway, reason: "unavailable", err: err,
			text: "Bad Gateway. The request could not be delivered to the listener."}
	}
	failed := func(err error) { p.fail(undelivered(err)) }
	if !inline {
		if err := p.cc.post(ctx, &relay.ControlMessage{Request: &relay.RequestCommand{Address: cmd.Address, ID: cmd.ID}}, nil, failed); err != nil {
			return undelivered(err)
		}
		return nil
	}
	var body []byte
	if r.ContentLength > 0 {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return &wireError{code: http.StatusBadRequest, reason: "bad_request", err: err,
				text: "Bad Request. The request body is shorter than its Content-Length."}
		}
	}
	cmd.Body = relay.Bool(len(body) > 0)
	if len(body) == 0 {
		body = nil
	}
	if err := p.cc.post(ctx, &relay.ControlMessage{Request: cmd}, body, failed); err != nil {
		return undelivered(err)
	}
	return nil
}

var errRequestTimeout = &wireError{code: http.StatusGatewayTimeout, reason: "timeout",
	text: "The request was routed to the listener but the listener did not respond in the required time."}

// awaitResponse waits for the listener's response on the control channel
// or for its rendezvous (kept in p.rv) until expired fires (at deadline)
// or the sender goes away; on a rendezvous it sends the full request there
// unless it went inline, then reads the response command.
func (s *Server) awaitResponse(r *http.Request, p *pendingRequest, cmd *relay.RequestCommand, inline bool, deadline time.Time, expired <-chan time.Time) (ctrlResponse, *wireError) {
	var resp ctrlResponse
	for resp.cmd == nil && p.rv == nil {
		select {
		case resp = <-p.respCh:
		case p.rv = <-p.rvCh:
		case we := <-p.failCh:
			return resp, we
		case <-r.Context().Done():
			return resp, errSenderGone
		case <-expired:
			return resp, errRequestTimeout
		}
	}
	if p.rv == nil {
		return resp, nil
	}
	broken := func(err error) *wireError {
		return &wireError{code: http.StatusInternalServerError, reason: "unavailable", err: err,
			text: "The service was unable to process the request."}
	}
	p.rv.SetReadLimit(s.cfg.MaxMessageBytes)
	if !inline {
		cmd.Body = relay.Bool(r.ContentLength != 0)
		if err := s.writeRequestOnRendezvous(p.rv, cmd, r, deadline); err != nil {
			return resp, broken(err)
		}
	}
	rc, err := readResponseCommand(p.rv, deadline)
	if errors.Is(err, errDeadline) {
		return resp, errRequestTimeout
	}
	if err != nil {
		return resp, broken(err)
	}
	resp.cmd = rc
	return resp, nil
}

var errDeadline = errors.New("deadline exceeded")

// writeRequestOnRendezvous sends the full request command and, if it has
// one, the body as one binary message streamed from the sender.
func (s *Server) writeRequestOnRendezvous(rv *websocket.Conn, cmd *relay.RequestCommand, r *http.Request, deadline time.Time) error {
	data, err := relay.EncodeControlMessage(&relay.ControlMessage{Request: cmd})
	if err != nil {
		return err
	}
	rv.SetWriteDeadline(deadline)
	if err := rv.WriteMessage(websocket.TextMessage, data); err != nil {
		return err
	}
	if !cmd.HasBody() {
		return nil
	}
	wr, err := rv.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := io.Copy(wr, http.MaxBytesReader(nil, r.Body, s.cfg.MaxMessageBytes)); err != nil {
		return fmt.Errorf("stream request body: %w", err)
	}
	return wr.Close()
}

// readResponseCommand reads the listener's response command from a
// rendezvous, skipping stray empty binary messages.
func readResponseCommand(rv *websocket.Conn, deadline time.Time) (*relay.ResponseCommand, error) {
	rv.SetReadDeadline(deadline)
	for {
		mt, data, err := rv.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errDeadline
			}
			return nil, err
		}
		if mt != websocket.TextMessage {
			continue
		}
		m, err := relay.DecodeControlMessage(data)
		if err != nil {
			return nil, err
		}
		if m.Response == nil {
			return nil, errors.New("rendezvous: expected a response command")
		}
		return m.Response, nil
	}
}

// writeListenerResponse writes the listener's response to the sender on the
// hijacked connection: status line with statusDescription, headers with
// Via, and the body (fixed-length from the control channel, chunked when
// streamed from a rendezvous).
func (s *Server) writeListenerResponse(w http.ResponseWriter, r *http.Request, resp ctrlResponse, rv *websocket.Conn) {
	cmd := resp.cmd
	code := int(cmd.StatusCode)
	if code < 200 || code > 999 {
		// 1xx would make the sender expect another response.
		s.writeStatus(w, r, "", &wireError{code: http.StatusBadGateway, reason: "unavailable",
			text: "Bad Gateway. The listener answered with an invalid status code."})
		return
	}
	buffered := rv == nil || !cmd.Body
	keepAlive := buffered && standardReason(code, cmd.StatusDescription)
	h := http.Header{}
	if keepAlive {
		h = w.Header() // written by net/http as it is: no copy
	}
	listenerHeader(cmd.ResponseHeaders, h)
	h.Set("Via", addVia(h.Get("Via"), r.Host))
	noBody := r.Method == http.MethodHead || !bodyAllowed(code)
	if buffered {
		body := resp.body
		if !cmd.Body || noBody {
			body = nil
		}
		if keepAlive {
			writeKeepAlive(w, code, body)
			return
		}
		s.writeResponse(w, r, rawResponse{code: code, reason: cmd.StatusDescription, header: h, body: body})
		return
	}
	s.streamListenerResponse(w, r, code, cmd.StatusDescription, h, noBody, rv)
}

// listenerHeader adds the listener's response headers that may reach the
// sender to h. The values share one backing array.
func listenerHeader(fields map[string]string, h http.Header) {
	vals := make([]string, 0, len(fields)+1) // +1: Via
	for k, v := range fields {
		ck := http.CanonicalHeaderKey(k)
		if hopHeaders[ck] || !validHeaderName(k) || !validHeaderValue(v) {
			continue
		}
		vals = append(vals, v)
		h[ck] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
}

// standardReason reports whether description is the reason phrase net/http
// writes for code anyway (or empty), so that the response needs no
// hijacked connection.
func standardReason(code int, description string) bool {
	return description == "" || description == http.StatusText(code)
}

// writeKeepAlive writes a buffered listener response, whose header is
// already in w.Header(), through net/http, so
// the sender's connection stays open for its next request, as the service's
// front end keeps it: hijacking (for a custom reason phrase) closes it, and
// a sender that dials for every request spends more on TCP than on the
// relay.
func writeKeepAlive(w http.ResponseWriter, code int, body []byte) {
	if bodyAllowed(code) {
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(code)
	if len(body) > 0 && bodyAllowed(code) {
		_, _ = w.Write(body)
	}
}

// streamListenerResponse writes a response whose body the listener streams
// on the rendezvous as one binary message: on the hijacked connection, as
// a chunked body, so it need not fit in memory.
func (s *Server) streamListenerResponse(w http.ResponseWriter, r *http.Request, code int, description string, h http.Header, noBody bool, rv *websocket.Conn) {
	rv.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	mt, body, err := rv.NextReader()
	if err != nil || mt != websocket.BinaryMessage {
		s.writeStatus(w, r, "", &wireError{code: http.StatusInternalServerError, reason: "unavailable", err: err,
			text: "The service was unable to process the request."})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Debug("cannot hijack for a streamed response", slog.Any("err", err))
		return
	}
	defer conn.Close()
	reason := sanitizeReason(description)
	if reason == "" {
		reason = http.StatusText(code)
	}
	bw := brw.Writer
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", code, reason)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	if !noBody {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Write(bw)
	bw.WriteString("\r\n")
	if noBody {
		bw.Flush()
		return
	}
	cw := httputil.NewChunkedWriter(bw)
	_, err = io.Copy(cw, &idleReader{r: body, c: rv, idle: s.cfg.RequestTimeout})
	if err != nil {
		// Cut the response short: the sender sees a truncated chunked body.
		s.log.Debug("streaming response body failed", slog.Any("err", err))
		bw.Flush()
		return
	}
	cw.Close()
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("write response", slog.Any("err", err))
	}
}

// idleReader refreshes c's read deadline before every read, so a streamed
// body may take long in total but may not stall for more than idle.
type idleReader struct {
	r    io.Reader
	c    *websocket.Conn
	idle time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.c.SetReadDeadline(time.Now().Add(ir.idle))
	return ir.r.Read(p)
}

// handleRequestRendezvous handles a listener dialing a request address
// ("sb-hc-action=request&sb-hc-id=…"). The address is valid once, while its
// request is pending.
func (s *Server) handleRequestRendezvous(w http.ResponseWriter, r *http.Request, q url.Values) {
	id := q.Get(relay.QueryID)
	s.mu.Lock()
	p := s.pendingReq[id]
	ok := p != nil && !p.rvTaken && !p.finished
	if ok {
		p.rvTaken = true
	}
	s.mu.Unlock()
	if !ok {
		s.writeStatus(w, r, "", &wireError{code: http.StatusForbidden, reason: "url_not_valid",
			text: "URL not valid. The rendezvous address is unknown, expired or already used."})
		return
	}
	ws, gen, err := s.upgrade(w, r, nil)
	if err != nil {
		p.fail(&wireError{code: http.StatusInternalServerError, reason: "unavailable", err: err, text: "The service was unable to process the request."})
		return
	}
	if !s.track(ws, gen) {
		return
	}
	s.mu.Lock()
	if p.finished {
		s.mu.Unlock()
		s.untrack(ws)
		return
	}
	p.rvCh <- ws
	s.mu.Unlock()
}

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
