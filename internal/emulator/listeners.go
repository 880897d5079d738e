package emulator

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/relay"
)

const (
	// controlReadLimit bounds one message from a listener on its control
	// channel: a JSON command or an inline response body (≤ 64 kB by the
	// protocol; some margin for listeners that inline a little more).
	controlReadLimit = 1 << 20
	// controlWriteTimeout bounds one write (command plus body) on a control
	// channel; a listener that does not read for that long is dropped.
	controlWriteTimeout = 10 * time.Second
	// closeWait is how long a close handshake may take before the TCP
	// connection is closed anyway.
	closeWait = 2 * time.Second
)

// controlChannel is one connected listener.
type controlChannel struct {
	// Static after construction.
	s      *Server
	e      *entity
	id     string // the listener's sb-hc-id (for Allowed/DisallowedListeners)
	host   string // Host the listener used to reach us; rendezvous addresses use it
	scheme string // "ws" or "wss"
	log    *slog.Logger

	// ws is set before ready is closed, and nil after that if the upgrade
	// failed.
	ws    *websocket.Conn
	ready chan struct{}

	// The write queue (see send and post). Guarded by wmu, which is
	// never held across a write.
	wmu     sync.Mutex
	wq      []ctrlOut // commands waiting for the writer, in order
	writing bool      // a goroutine is writing the queue
	werr    error     // a write failed: the channel is broken

	// Guarded by mu.
	mu     sync.Mutex
	expiry time.Time // token expiry; the channel closes at expiry+grace
	timer  *time.Timer
	done   bool
}

// handleListen handles "GET /$hc/{path}?sb-hc-action=listen": a listener's
// control channel. The steps: admit (with a reserved slot), register,
// upgrade, then serve the channel until it ends.
func (s *Server) handleListen(w http.ResponseWriter, r *http.Request, rest string) {
	e, expiry, ok := s.admitListener(w, r, rest)
	if !ok {
		return
	}
	c := s.newControlChannel(r, e, expiry)
	// Register before the 101 goes out, so a sender that connects as soon
	// as the listener's handshake completes finds it; send waits for ready.
	s.mu.Lock()
	e.reserved--
	e.listeners = append(e.listeners, c)
	s.mu.Unlock()
	ws, gen, err := s.upgrade(w, r, nil)
	if err == nil && !s.track(ws, gen) {
		err = errShuttingDown
	}
	if err != nil {
		s.log.Debug("listen upgrade failed", slog.String("entity", e.name), slog.Any("err", err))
		close(c.ready)
		c.unregister()
		return
	}
	c.ws = ws
	close(c.ready)
	s.m.ListenersChanged(1)
	c.log.Info("listener connected", slog.String("remote", r.RemoteAddr))
	c.armExpiry()
	c.readLoop()
	c.shutdown()
}

// admitListener resolves a listener's path, checks its token for the
// Listen right and reserves one of the entity's listener slots (so
// concurrent listeners cannot exceed the cap while upgrading); the caller
// turns the reservation into a registration. On failure it has written the
// status and returns ok false.
func (s *Server) admitListener(w http.ResponseWriter, r *http.Request, rest string) (e *entity, expiry time.Time, ok bool) {
	res, we := s.resolve(rest)
	if we != nil {
		s.writeStatus(w, r, "", we)
		return nil, time.Time{}, false
	}
	if res.suffix != "" {
		// Listeners register on the entity itself, not a sub-path.
		s.writeStatus(w, r, res.name+res.suffix, errNotFound(errors.New("listen on a sub-path")))
		return nil, time.Time{}, false
	}
	if res.e == nil && !s.cfg.AutoCreate {
		s.writeStatus(w, r, res.name, errNotFound(errors.New("unknown entity")))
		return nil, time.Time{}, false
	}
	tok, we := s.authorize(r, res.name, RightListen, false, false)
	if we != nil {
		s.writeStatus(w, r, res.name, we)
		return nil, time.Time{}, false
	}
	e = s.ensure(res)
	s.mu.Lock()
	full := len(e.listeners)+e.reserved >= s.cfg.MaxListeners
	if !full {
		e.reserved++
	}
	s.mu.Unlock()
	if full {
		s.writeStatus(w, r, e.name, &wireError{code: http.StatusForbidden, reason: "listener_limit",
			text: "QuotaExceeded: The maximum number of listeners for this hybrid connection has been reached."})
		return nil, time.Time{}, false
	}
	return e, tok.Expiry, true
}

// newControlChannel builds the not yet upgraded control channel of a
// listener of e whose token expires at expiry.
func (s *Server) newControlChannel(r *http.Request, e *entity, expiry time.Time) *controlChannel {
	id := r.URL.Query().Get(relay.QueryID)
	if id == "" || len(id) > 128 {
		id = relay.NewID()
	}
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	return &controlChannel{
		s: s, e: e, id: id, host: r.Host, scheme: scheme,
		log:    s.log.With(slog.String("entity", e.name), slog.String("listener", id)),
		ready:  make(chan struct{}),
		expiry: expiry,
	}
}

// armExpiry (re)starts the expiry timer for the current token.
func (c *controlChannel) armExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	d := time.Until(c.expiry.Add(c.s.cfg.TokenGrace))
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.checkExpiry)
	} else {
		c.timer.Reset(d)
	}
}

// checkExpiry runs on the timer: closes the channel with 1008 unless the
// token was renewed in the meantime.
func (c *controlChannel) checkExpiry() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	left := time.Until(c.expiry.Add(c.s.cfg.TokenGrace))
	if left > 0 {
		c.timer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.log.Info("control channel token expired; closing with 1008")
	c.s.m.Rejected("token_expired")
	c.closeWith(websocket.ClosePolicyViolation, "The token has expired and was not renewed.")
}

// closeWith sends a close frame and lets the read loop finish the
// handshake, bounded by closeWait.
func (c *controlChannel) closeWith(code int, text string) {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(closeWait))
	c.ws.NetConn().SetReadDeadline(time.Now().Add(closeWait))
}

// readLoop reads the listener's messages until the channel fails:
// renewToken, and responses to inline HTTP requests. It is the only reader.
func (c *controlChannel) readLoop() {
	c.ws.SetReadLimit(controlReadLimit)
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
				c.log.Info("listener disconnected", slog.Int("code", ce.Code))
			} else {
				c.log.Info("listener connection lost", slog.Any("err", err))
			}
			return
		}
		if mt != websocket.TextMessage {
			// A stray (often empty) binary message, e.g. hyco-https after a
			// body-less response: ignore.
			continue
		}
		m, err := relay.DecodeControlMessage(data)
		if err != nil {
			c.log.Debug("ignoring control message", slog.Any("err", err))
			continue
		}
		switch {
		case m.RenewToken != nil:
			c.renew(m.RenewToken.Token)
		case m.Response != nil:
			var body []byte
			if m.Response.Body {
				mt, body, err = c.ws.ReadMessage()
				if err != nil {
					c.log.Info("listener connection lost reading a response body", slog.Any("err", err))
					return
				}
				if mt != websocket.BinaryMessage {
					c.log.Debug("response body is not a binary message")
				}
			}
			c.s.deliverResponse(c, m.Response, body)
		default:
			c.log.Debug("ignoring unexpected command on control channel")
		}
	}
}

// renew handles renewToken: a valid token for this entity with Listen
// extends the channel's life; anything else closes it with 1008.
func (c *controlChannel) renew(raw string) {
	tok, we := c.s.verify(raw, c.e.name, RightListen)
	if we != nil {
		c.log.Warn("renewToken rejected; closing with 1008", slog.Int("status", we.code), slog.String("cause", we.text))
		c.s.m.Rejected(we.reason)
		c.closeWith(websocket.ClosePolicyViolation, "The token renewal failed: "+we.text)
		return
	}
	c.mu.Lock()
	c.expiry = tok.Expiry
	c.mu.Unlock()
	c.armExpiry()
	c.log.Debug("token renewed", slog.Time("expiry", tok.Expiry))
}

// ctrlOut is a command queued for the control channel: the encoded
// command, its body message (nil: none) and what to tell its sender when
// the write fails (done receives the outcome; failed is called instead
// when done is nil).
type ctrlOut struct {
	data, body []byte
	buf        *[]byte // data's buffer, from cmdBuffers
	done       chan error
	failed     func(error)
}

// cmdBuffers holds the buffers of encoded commands between writes.
var cmdBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledCommand is the largest command buffer put back in cmdBuffers.
const maxPooledCommand = 16 << 10

// maxWriterRounds bounds how many batches a sender's goroutine writes for
// others before it hands the rest of the queue to a goroutine of its own.
const maxWriterRounds = 8

// send writes a command (and, if body is non-nil, one binary body message
// right after it) on the control channel and waits for the write. It waits
// for the channel's upgrade at most until ctx is done.
func (c *controlChannel) send(ctx context.Context, m *relay.ControlMessage, body []byte) error {
	done := make(chan error, 1)
	if err := c.enqueue(ctx, m, ctrlOut{body: body, done: done}); err != nil {
		return err
	}
	return <-done
}

// post queues a command (and its body message, if body is non-nil) for the
// control channel without waiting for the write: failed is called with the
// error if the write fails (after the channel was closed). An error is
// returned, and failed not called, when the command was not queued.
//
// The queue has no writer goroutine: the sender that finds nobody writing
// writes everything queued, corked into one write per batch, so under load
// many requests share a syscall and a wake-up of the listener without a
// goroutine hand-off per request.
func (c *controlChannel) post(ctx context.Context, m *relay.ControlMessage, body []byte, failed func(error)) error {
	return c.enqueue(ctx, m, ctrlOut{body: body, failed: failed})
}

// enqueue encodes m into out and queues it; the caller writes the queue if
// nobody does.
func (c *controlChannel) enqueue(ctx context.Context, m *relay.ControlMessage, out ctrlOut) error {
	buf := cmdBuffers.Get().(*[]byte)
	data, err := relay.AppendControlMessage((*buf)[:0], m)
	if err != nil {
		cmdBuffers.Put(buf)
		return err
	}
	*buf = data
	out.data, out.buf = data, buf
	select {
	case <-c.ready:
		if c.ws == nil {
			return errors.New("listener upgrade failed")
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	c.wmu.Lock()
	if err := c.werr; err != nil {
		c.wmu.Unlock()
		return err
	}
	c.wq = append(c.wq, out)
	if c.writing {
		c.wmu.Unlock()
		return nil
	}
	c.writing = true
	c.wmu.Unlock()
	runtime.Gosched() // let senders that are ready to run queue theirs too
	c.writeQueue(maxWriterRounds)
	return nil
}

// writeQueue writes the queue batch by batch until it is empty, or, after
// rounds batches, hands what is left to a new goroutine. The caller has
// set c.writing.
func (c *controlChannel) writeQueue(rounds int) {
	for range rounds {
		c.wmu.Lock()
		batch := c.wq
		c.wq = nil
		if len(batch) == 0 {
			c.writing = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
		err := c.writeBatch(batch)
		for _, o := range batch {
			o.report(err)
		}
		if err != nil {
			c.wmu.Lock()
			c.werr, c.writing = err, false
			rest := c.wq
			c.wq = nil
			c.wmu.Unlock()
			for _, o := range rest {
				o.report(err)
			}
			return
		}
	}
	go c.writeQueue(maxWriterRounds)
}

// report tells o's sender the outcome of its write and releases o's
// buffer.
func (o ctrlOut) report(err error) {
	if o.buf != nil && cap(*o.buf) <= maxPooledCommand {
		cmdBuffers.Put(o.buf)
	}
	switch {
	case o.done != nil:
		o.done <- err
	case err != nil && o.failed != nil:
		o.failed(err)
	}
}

// writeBatch writes batch's commands and body messages in order, corked
// into one write when there is more than one message. A failed write
// closes the connection (the read loop then ends the channel).
func (c *controlChannel) writeBatch(batch []ctrlOut) error {
	deadline := time.Now().Add(controlWriteTimeout)
	c.ws.SetWriteDeadline(deadline)
	cork := corkOf(c.ws.NetConn())
	if cork != nil && (len(batch) > 1 || batch[0].body != nil) {
		cork.Cork()
	} else {
		cork = nil
	}
	var err error
	for _, o := range batch {
		if err = c.ws.WriteMessage(websocket.TextMessage, o.data); err != nil {
			break
		}
		if o.body != nil {
			if err = c.ws.WriteMessage(websocket.BinaryMessage, o.body); err != nil {
				break
			}
		}
	}
	if cork != nil {
		if uerr := cork.Uncork(deadline); err == nil {
			err = uerr
		}
	}
	if err != nil {
		c.ws.NetConn().Close()
	}
	return err
}

// shutdown unregisters the channel and fails the senders waiting on it.
func (c *controlChannel) shutdown() {
	c.mu.Lock()
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	s := c.s
	var failed []*pendingAccept
	c.unregister()
	s.mu.Lock()
	for id, p := range s.pending {
		if p.cc == c {
			delete(s.pending, id)
			failed = append(failed, p)
		}
	}
	s.mu.Unlock()
	s.untrack(c.ws)
	s.m.ListenersChanged(-1)
	for _, p := range failed {
		p.deliver(acceptResult{err: &wireError{code: http.StatusNotFound, text: "Endpoint does not exist. The listener disconnected.", reason: "no_listener"}})
	}
	s.failRequestsOf(c)
}

// unregister removes c from its entity's listeners.
func (c *controlChannel) unregister() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for i, l := range c.e.listeners {
		if l == c {
			c.e.listeners = append(c.e.listeners[:i], c.e.listeners[i+1:]...)
			return
		}
	}
}

// hostForAddress returns the host for rendezvous addresses sent to c.
func (c *controlChannel) hostForAddress() string {
	h := c.host
	if h == "" || strings.ContainsAny(h, "/?# ") {
		h = c.s.Addr()
	}
	return h
}
