package emulator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

// pendingAccept is a sender waiting for a listener to accept or reject.
type pendingAccept struct {
	id     string
	entity string
	cc     *controlChannel
	ch     chan acceptResult // buffer 1; exactly one result is delivered
}

// acceptResult ends a pendingAccept: the listener's upgraded rendezvous, a
// rejection, or an error.
type acceptResult struct {
	ws          *websocket.Conn
	subprotocol string
	err         *wireError
}

func (p *pendingAccept) deliver(r acceptResult) { p.ch <- r }

// take removes and returns the pending accept id; nil if unknown, used or
// expired. Whoever takes it must deliver exactly one result.
func (s *Server) takePending(id string) *pendingAccept {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[id]
	if p != nil {
		delete(s.pending, id)
	}
	return p
}

// connectHeaderNames restores the spelling listeners expect for headers
// that net/http canonicalizes differently (hyco-ws looks up
// "Sec-WebSocket-Key" case-sensitively).
var connectHeaderNames = map[string]string{
	"Sec-Websocket-Key":        "Sec-WebSocket-Key",
	"Sec-Websocket-Version":    "Sec-WebSocket-Version",
	"Sec-Websocket-Protocol":   "Sec-WebSocket-Protocol",
	"Sec-Websocket-Extensions": "Sec-WebSocket-Extensions",
}

// handleConnect handles "GET /$hc/{path}[/suffix]?sb-hc-action=connect": a
// sender's WebSocket. The upgrade is held until a listener accepts or
// rejects, or AcceptTimeout passes. The steps: admit, register the pending
// accept, offer it on the listener's control channel, wait, bridge.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request, rest string) {
	e, cc, suffix, ok := s.admitConnect(w, r, rest)
	if !ok {
		return
	}
	p, ok := s.registerAccept(s.nextID(r.URL.Query().Get(relay.QueryID)), e.name, cc)
	if !ok {
		s.writeStatus(w, r, e.name, errShuttingDown)
		return
	}
	notPending := sync.OnceFunc(func() { s.m.PendingChanged(-1) })
	defer notPending()

	timer := time.NewTimer(s.cfg.AcceptTimeout)
	defer timer.Stop()
	if we := s.offerAccept(r, p, acceptCommand(r, p, suffix)); we != nil {
		s.writeStatus(w, r, e.name, we)
		return
	}
	result := s.awaitAccept(r, p, timer.C)
	notPending()
	if result.err != nil {
		if result.ws != nil {
			result.ws.NetConn().Close()
		}
		if result.err != errSenderGone {
			s.writeStatus(w, r, e.name, result.err)
		}
		return
	}
	s.bridgeAccepted(w, r, p, result)
}

// admitConnect checks a WebSocket sender's token and picks a listener for
// it. On failure it has written the status and returns ok false.
func (s *Server) admitConnect(w http.ResponseWriter, r *http.Request, rest string) (e *entity, cc *controlChannel, suffix string, ok bool) {
	res, _, ok := s.admitSender(w, r, rest, false)
	if !ok {
		return nil, nil, "", false
	}
	e = s.ensure(res)
	cc, we := s.pickListener(e, r.Header)
	if we == nil && cc == nil {
		we = errNotFound(errors.New("no listener connected"))
		we.reason = "no_listener"
	}
	if we != nil {
		s.writeStatus(w, r, e.name, we)
		return nil, nil, "", false
	}
	return e, cc, res.suffix, true
}

// registerAccept makes id a pending accept, so the listener's rendezvous
// finds its sender; ok is false once the server is closed.
func (s *Server) registerAccept(id, entityName string, cc *controlChannel) (p *pendingAccept, ok bool) {
	p = &pendingAccept{id: id, entity: entityName, cc: cc, ch: make(chan acceptResult, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false
	}
	s.pending[id] = p
	s.mu.Unlock()
	s.m.PendingChanged(1)
	return p, true
}

// acceptCommand builds the accept command for p: the rendezvous address
// (with the sender's suffix and query) and the sender's headers.
func acceptCommand(r *http.Request, p *pendingAccept, suffix string) *relay.ControlMessage {
	addr := url.URL{Scheme: p.cc.scheme, Host: p.cc.hostForAddress(), Path: "/$hc/" + p.entity}
	addr.RawPath = "/$hc/" + escapePathSegments(p.entity) + suffix
	if path, err := url.PathUnescape(addr.RawPath); err == nil {
		addr.Path = path
	}
	addr.RawQuery = joinQuery(filterQuery(r.URL.RawQuery), relay.QueryAction+"=accept&"+relay.QueryID+"="+url.QueryEscape(p.id))
	return &relay.ControlMessage{Accept: &relay.AcceptCommand{
		Address:        addr.String(),
		ID:             p.id,
		ConnectHeaders: connectHeaders(r),
		RemoteEndpoint: remoteEndpoint(r),
	}}
}

// offerAccept sends cmd on p's control channel. If that fails while p is
// still pending, it returns the sender's 502; if the listener raced the
// failure, its result is coming and offerAccept returns nil.
func (s *Server) offerAccept(r *http.Request, p *pendingAccept, cmd *relay.ControlMessage) *wireError {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.AcceptTimeout)
	err := p.cc.send(ctx, cmd, nil)
	cancel()
	if err != nil && s.takePending(p.id) != nil {
		return &wireError{code: http.StatusBadGateway, reason: "unavailable", err: err,
			text: "The listener's control channel failed."}
	}
	p.cc.log.Debug("accept sent", slog.String("id", p.id))
	return nil
}

// errSenderGone in an acceptResult or as a request's outcome says the
// sender went away while waiting: nothing is written to it.
var errSenderGone = &wireError{code: http.StatusBadRequest, reason: "sender_gone", text: "The sender went away."}

// awaitAccept waits for the listener's answer to p until expired fires or
// the sender goes away. Whoever takes p from the pending map delivers its
// result, so once the listener took it, its result is awaited.
func (s *Server) awaitAccept(r *http.Request, p *pendingAccept, expired <-chan time.Time) acceptResult {
	select {
	case result := <-p.ch:
		return result
	case <-expired:
		if s.takePending(p.id) != nil {
			return acceptResult{err: &wireError{code: http.StatusGatewayTimeout, reason: "timeout",
				text: "The listener did not accept the connection in the required time."}}
		}
	case <-r.Context().Done():
		if s.takePending(p.id) != nil {
			return acceptResult{err: errSenderGone}
		}
	}
	return <-p.ch
}

// bridgeAccepted upgrades the sender with the subprotocol the listener
// chose and relays messages between the two WebSockets until one ends.
func (s *Server) bridgeAccepted(w http.ResponseWriter, r *http.Request, p *pendingAccept, result acceptResult) {
	lws := result.ws
	var hdr http.Header
	if result.subprotocol != "" {
		hdr = http.Header{"Sec-Websocket-Protocol": {result.subprotocol}}
	}
	sws, gen, err := s.upgrade(w, r, hdr)
	if err != nil {
		s.log.Debug("sender upgrade failed after accept", slog.String("id", p.id), slog.Any("err", err))
		s.untrack(lws)
		return
	}
	if !s.track(sws, gen) {
		s.untrack(lws)
		return
	}
	s.log.Debug("connection relayed", slog.String("entity", p.entity), slog.String("id", p.id))
	s.relay(sws, lws)
}

// escapePathSegments escapes each "/"-separated segment of name.
func escapePathSegments(name string) string {
	segs := strings.Split(name, "/")
	for i, sg := range segs {
		segs[i] = url.PathEscape(sg)
	}
	return strings.Join(segs, "/")
}

// filterQuery drops every sb-hc-* parameter that has an "=" (a bare
// "sb-hc-x" is kept), keeping the rest verbatim (§2.1).
func filterQuery(raw string) string {
	if raw == "" {
		return ""
	}
	var kept []string
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, _, hasEq := strings.Cut(part, "=")
		if hasEq {
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			if strings.HasPrefix(strings.ToLower(k), relay.QueryPrefix) {
				continue
			}
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}

// connectHeaders returns the sender's handshake headers for the accept
// command: one string per header (multiple values comma-joined), Host
// included, ServiceBusAuthorization removed.
func connectHeaders(r *http.Request) map[string]string {
	h := map[string]string{"Host": r.Host}
	for k, v := range r.Header {
		if strings.EqualFold(k, relay.HeaderAuthorization) {
			continue
		}
		if n, ok := connectHeaderNames[k]; ok {
			k = n
		}
		h[k] = strings.Join(v, ", ")
	}
	return h
}

// rejectParams returns the listener's reject status from the accept URL:
// sb-hc-statusCode/-Description, or the unprefixed spelling some clients use.
func rejectParams(q url.Values) (code int, desc string, isReject bool, we *wireError) {
	raw := q.Get(relay.QueryStatusCode)
	desc = q.Get(relay.QueryStatusDescription)
	if raw == "" {
		raw = q.Get("statusCode")
		if desc == "" {
			desc = q.Get("statusDescription")
		}
	}
	if raw == "" {
		return 0, "", false, nil
	}
	code, err := strconv.Atoi(raw)
	if err != nil || code < 300 || code > 599 {
		return 0, "", true, &wireError{code: http.StatusBadRequest, reason: "bad_request",
			text: "Bad Request. sb-hc-statusCode must be a number from 300 to 599."}
	}
	return code, desc, true, nil
}

// handleAccept handles the listener's accept rendezvous
// ("sb-hc-action=accept&sb-hc-id=…"), or its rejection (with
// sb-hc-statusCode), which is answered 410 Gone.
func (s *Server) handleAccept(w http.ResponseWriter, r *http.Request, q url.Values) {
	code, desc, isReject, we := rejectParams(q)
	if we != nil {
		s.writeStatus(w, r, "", we)
		return
	}
	id := q.Get(relay.QueryID)
	p := s.takePending(id)
	if p == nil {
		s.writeStatus(w, r, "", &wireError{code: http.StatusForbidden, reason: "url_not_valid",
			text: "URL not valid. The rendezvous address is unknown, expired or already used."})
		return
	}
	if isReject {
		if desc == "" {
			desc = http.StatusText(code)
		}
		p.deliver(acceptResult{err: &wireError{code: code, text: desc, reason: "rejected", verbatim: true}})
		s.writeStatus(w, r, p.entity, &wireError{code: http.StatusGone, // counted once, for the sender
			text: "Gone. The sender's connection was rejected as requested."})
		return
	}
	var sub string
	if ps := websocket.Subprotocols(r); len(ps) > 0 {
		sub = ps[0]
	}
	var hdr http.Header
	if sub != "" {
		hdr = http.Header{"Sec-Websocket-Protocol": {sub}}
	}
	ws, gen, err := s.upgrade(w, r, hdr)
	if err != nil {
		p.deliver(acceptResult{err: &wireError{code: http.StatusBadGateway, reason: "unavailable", err: err,
			text: "The listener failed to complete the rendezvous."}})
		return
	}
	if !s.track(ws, gen) {
		p.deliver(acceptResult{err: errShuttingDown})
		return
	}
	p.deliver(acceptResult{ws: ws, subprotocol: sub})
}

// relay joins a sender and a listener leg until both directions are closed
// or one leg fails. It returns after both pumps have stopped and both
// connections are closed.
func (s *Server) relay(a, b *websocket.Conn) {
	for _, c := range []*websocket.Conn{a, b} {
		c.SetReadLimit(s.cfg.MaxMessageBytes)
		// Do not echo close frames: forward them, so each side can keep
		// sending after the other has closed (half-close, §5.3).
		c.SetCloseHandler(func(int, string) error { return nil })
	}
	var once sync.Once
	abort := func() {
		once.Do(func() {
			abortConn(a)
			abortConn(b)
		})
	}
	done := make(chan struct{})
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		abort()
		s.untrack(a)
		s.untrack(b)
		return
	}
	go func() {
		defer s.wg.Done()
		defer close(done)
		if err := s.pump(b, a); err != nil {
			abort()
		}
	}()
	if err := s.pump(a, b); err != nil {
		abort()
	}
	<-done
	s.untrack(a)
	s.untrack(b)
}

// pump copies messages from src to dst, message by message and frame by
// frame, until src sends a close frame (forwarded with its code and reason;
// nil is returned) or something fails (the error is returned and the caller
// aborts both legs). pump is dst's only data writer.
func (s *Server) pump(src, dst *websocket.Conn) error {
	for {
		mt, r, err := src.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure && ce.Code != websocket.CloseTLSHandshake {
				msg := websocket.FormatCloseMessage(ce.Code, ce.Text)
				if ce.Code == websocket.CloseNoStatusReceived {
					msg = []byte{}
				}
				return dst.WriteControl(websocket.CloseMessage, msg, time.Now().Add(controlWriteTimeout))
			}
			return err
		}
		wr, err := dst.NextWriter(mt)
		if err != nil {
			return err
		}
		n, err := io.Copy(wr, r)
		if err != nil {
			return err
		}
		if err := wr.Close(); err != nil {
			return err
		}
		s.m.MessageRelayed(n)
	}
}

// abortConn drops a connection without a close frame (RST where possible),
// so the peer sees the loss the way it would on a network failure.
func abortConn(c *websocket.Conn) {
	nc := c.NetConn()
	raw := nc
	if cc, ok := raw.(*relay.CorkConn); ok { // corkListener's
		raw = cc.Conn
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}
