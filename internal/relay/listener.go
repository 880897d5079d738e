package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Listener defaults and limits.
const (
	// DefaultPingInterval is the control channel's keepalive period, and
	// its maximum: Azure drops idle control channels after about 4 minutes
	// and azbridge pings every 30 s.
	DefaultPingInterval = 30 * time.Second
	// DefaultRenewBefore is how long before expiry the listener sends
	// renewToken (clamped to half the token lifetime).
	DefaultRenewBefore = 5 * time.Minute
	// DefaultAcceptTimeout bounds dialling an accept or request rendezvous
	// (the relay keeps the address valid for about 30 s; .NET uses 20 s).
	DefaultAcceptTimeout = 20 * time.Second
	// DefaultRequestTimeout bounds one HTTP request, from the command to
	// the response: the relay gives up after 60 s.
	DefaultRequestTimeout = 60 * time.Second

	// controlReadLimit bounds one control-channel message: a JSON command
	// (≤ MaxControlMessage) or an inline request body (≤ MaxInlineBody,
	// with room for relays that inline a little more).
	controlReadLimit = 1 << 20
	// dialTimeout bounds opening the control channel.
	dialTimeout = 30 * time.Second
	// writeTimeout bounds one control-channel write.
	writeTimeout = 15 * time.Second
	// healthyRun is how long a control channel must have stayed up for
	// the reconnect backoff to start over.
	healthyRun = 10 * time.Second
)

// ListenerConfig configures a Listener. Only Credentials is required.
type ListenerConfig struct {
	// Credentials name the Hybrid Connection and hold a key with the
	// Listen right (or a fixed SAS token, which cannot be renewed).
	Credentials Credentials
	// AcceptHandler decides on each sender; nil accepts all. Return
	// accept=false with an HTTP status (300-599; others become 400) and a
	// description to reject: the sender gets that status line. It runs in
	// the connection's goroutine and must return within a few seconds (the
	// relay holds the sender meanwhile). A panic rejects with 502.
	AcceptHandler func(r *AcceptRequest) (accept bool, status int, description string)
	// ConnHandler runs in its own goroutine per accepted connection; the
	// connection is closed when it returns. ctx is cancelled when the
	// listener stops; the connection outlives control-channel reconnects.
	// nil rejects every WebSocket sender with 501.
	ConnHandler func(ctx context.Context, c *ListenerConn)
	// HTTPHandler serves HTTP request mode, one goroutine per request (a
	// finished request's goroutine may serve a later one), with the
	// response buffered (up to ReadLimit bytes); nil answers 501.
	HTTPHandler http.Handler
	// TokenTTL is the lifetime of each minted token; 0 means
	// DefaultTokenTTL.
	TokenTTL time.Duration
	// RenewBefore is how long before expiry renewToken is sent; 0 means
	// DefaultRenewBefore, negative disables renewal (the relay then closes
	// the control channel with 1008 at expiry and the listener reconnects).
	// It is clamped to half of TokenTTL.
	RenewBefore time.Duration
	// PingInterval is the WebSocket ping period, ≤ 30 s; 0 means
	// DefaultPingInterval. A ping unanswered within the interval drops the
	// control channel.
	PingInterval time.Duration
	// Backoff is the reconnect schedule; nil means Microsoft clients' (0,
	// 1, 2, 5, 10 s, then every 30 s). Delays are jittered by ±20%.
	Backoff []time.Duration
	// HTTPClient carries the TLS configuration for wss:// (a custom CA);
	// nil means http.DefaultClient.
	HTTPClient *http.Client
	// ReadLimit bounds one message on an accepted connection, one request
	// body and one buffered response body; 0 means DefaultReadLimit.
	ReadLimit int64
	// AcceptTimeout bounds dialling a rendezvous; 0 means DefaultAcceptTimeout.
	AcceptTimeout time.Duration
	// RequestTimeout bounds one HTTP request; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Now returns the current time for token minting; nil means time.Now.
	Now func() time.Time
	// TokenPlacement is where the control channel's dial puts the token:
	// header (""), query, or auto (header first, the query after a 401,
	// then the query only).
	TokenPlacement TokenPlacement
}

// Listener is a Hybrid Connections listener: it keeps a control channel
// (sb-hc-action=listen) open to the relay, reconnecting with backoff,
// renews its token, answers accept commands by dialling the rendezvous (or
// rejecting) and serves HTTP request mode through an http.Handler.
//
// Run drives it; Connected, WaitConnected and Close are safe for concurrent
// use, also while Run runs. A Listener runs once.
type Listener struct {
	// Static after construction.
	cfg  ListenerConfig
	log  *slog.Logger
	done chan struct{} // closed by Close

	placer *tokenPlacer // where control-channel dials put the token; safe for concurrent use

	closeOnce sync.Once
	handlers  sync.WaitGroup // handler goroutines (accepts and requests), busy or idle
	work      chan func()    // hands work to an idle handler goroutine; unbuffered
	idle      atomic.Int32   // handler goroutines waiting on work
	stopped   chan struct{}  // closed when Run returns: idle handler goroutines exit
	sessions  atomic.Int64   // control channels opened, for tests
	rvDials   atomic.Int64   // request rendezvous dialled, for tests

	// Guarded by mu.
	mu        sync.Mutex
	running   bool
	connected bool
	connCh    chan struct{} // closed when connected becomes true
}

// NewListener checks cfg and returns a Listener; call Run to start it. log
// may be nil (no logging). Secrets are never logged.
func NewListener(cfg ListenerConfig, log *slog.Logger) (*Listener, error) {
	if err := cfg.Credentials.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.TokenPlacement.Validate(); err != nil {
		return nil, err
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < 2*time.Second {
		return nil, fmt.Errorf("relay: listener TokenTTL %v is shorter than 2s", cfg.TokenTTL)
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	cfg.RenewBefore = min(cfg.RenewBefore, cfg.TokenTTL/2)
	if cfg.PingInterval <= 0 || cfg.PingInterval > DefaultPingInterval {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.AcceptTimeout <= 0 {
		cfg.AcceptTimeout = DefaultAcceptTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	cfg.ReadLimit = readLimit(cfg.ReadLimit)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Listener{
		cfg:     cfg,
		log:     log.With("entity", cfg.Credentials.EntityPath),
		done:    make(chan struct{}),
		connCh:  make(chan struct{}),
		work:    make(chan func()),
		stopped: make(chan struct{}),
		placer:  &tokenPlacer{p: cfg.TokenPlacement},
	}, nil
}

// Run opens the control channel and keeps it open until ctx is done or
// Close is called, then returns nil after every accepted connection's
// ConnHandler and every HTTP request have returned (they see their ctx
// cancelled). It returns an error wrapping ErrEntityNotFound when the relay
// answers 404 (no such entity: not retried), and one wrapping
// ErrUnauthorized, ErrForbidden or ErrInvalidCredentials when the first
// attempt is refused for its credentials. Every other failure is retried
// with the Backoff schedule, which starts over after a healthy run.
func (l *Listener) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("relay: listener already ran")
	}
	l.running = true
	l.mu.Unlock()

	defer l.handlers.Wait()
	defer close(l.stopped) // no more work: idle handler goroutines exit
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	bo := newBackoff(l.cfg.Backoff)
	first := true
	for {
		if ctx.Err() != nil {
			return nil
		}
		start := time.Now()
		ws, raw, expiry, err := l.dialControl(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case errors.Is(err, ErrEntityNotFound):
				return fmt.Errorf("relay: listen on %q: %w", l.cfg.Credentials.EntityPath, err)
			case first && (errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrInvalidCredentials)):
				return fmt.Errorf("relay: listen on %q: %w", l.cfg.Credentials.EntityPath, err)
			}
			first = false
			d := bo.Next()
			l.log.Warn("control channel dial failed", "err", err, "attempt", bo.Attempts(), "retry_in", d)
			if !sleepCtx(ctx, d) {
				return nil
			}
			continue
		}
		first = false
		err = l.runSession(ctx, ws, raw, expiry)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) >= healthyRun {
			bo.Reset()
		}
		d := bo.Next()
		l.log.Warn("control channel lost", "err", err, "close_status", int(websocket.CloseStatus(err)), "retry_in", d)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// WaitConnected blocks until the control channel is open, ctx is done
// (ctx.Err()) or the listener is closed (ErrClosed).
func (l *Listener) WaitConnected(ctx context.Context) error {
	for {
		l.mu.Lock()
		ok, ch := l.connected, l.connCh
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return ErrClosed
		}
	}
}

// Close stops the listener: the control channel is closed with 1000, Run
// cancels the handlers' contexts, waits for them and returns. Close does
// not wait for Run; it is idempotent and safe for concurrent use.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *Listener) setConnected(ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok == l.connected {
		return
	}
	l.connected = ok
	if ok {
		close(l.connCh)
	} else {
		l.connCh = make(chan struct{})
	}
}

// dialControl opens a control channel and returns it with its connection
// (for corking; nil through a proxy) and its token's expiry, placing the
// token as TokenPlacement says.
func (l *Listener) dialControl(ctx context.Context) (ws *websocket.Conn, raw *upgradedConn, exp time.Time, err error) {
	err = l.placer.do(func(inQuery bool) error {
		ws, raw, exp, err = l.dialControlOnce(ctx, inQuery)
		return err
	})
	return ws, raw, exp, err
}

// dialControlOnce dials the control channel once, with the token in the
// sb-hc-token query parameter when inQuery is set.
func (l *Listener) dialControlOnce(ctx context.Context, inQuery bool) (*websocket.Conn, *upgradedConn, time.Time, error) {
	now := l.cfg.Now()
	tok, exp, err := l.cfg.Credentials.accessToken(ctx, now, l.cfg.TokenTTL)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	h := http.Header{}
	id := NewID()
	uo := URLOptions{ID: id}
	switch {
	case tok == "":
	case inQuery:
		uo.Token = tok
	default:
		h.Set(HeaderAuthorization, tok)
	}
	u := l.cfg.Credentials.WebSocketURL(ActionListen, uo)
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var raw *upgradedConn
	client := upgradeClientFunc(l.cfg.HTTPClient, func(c *upgradedConn) { raw = c })
	ws, err := dialURL(dctx, u.String(), ActionListen, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h}, tok)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	ws.SetReadLimit(controlReadLimit)
	l.log.Info("control channel open", "id", id)
	return ws, raw, exp, nil
}

// session is one control channel's lifetime.
type session struct {
	// Static after construction.
	l    *Listener
	ws   *websocket.Conn
	ctx  context.Context // cancelled when the session ends
	lctx context.Context // the listener's lifetime, for handlers

	raw *upgradedConn // ws's connection, for corking; nil through a proxy

	// sendq feeds writeLoop, the control channel's only writer, which
	// keeps a response JSON and its body message adjacent and writes
	// whatever is queued together, with one syscall when raw is set.
	sendq chan *outCmd
}

// outCmd is a command (and optional body message) for writeLoop; done,
// if not nil, gets the write's outcome, and free, if not nil, is the
// response that msg and body belong to, freed once they are written.
type outCmd struct {
	msg, body []byte
	done      chan error // buffer 1
	free      *bufferedResponse
}

// Control-channel write queue limits.
const (
	sendQueue = 256 // commands waiting for writeLoop
	sendBatch = 64  // commands written with one syscall at most
)

// runSession serves one control channel until it fails or ctx is done.
func (l *Listener) runSession(ctx context.Context, ws *websocket.Conn, raw *upgradedConn, expiry time.Time) error {
	l.sessions.Add(1)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	s := &session{l: l, ws: ws, raw: raw, ctx: sctx, lctx: ctx, sendq: make(chan *outCmd, sendQueue)}
	l.setConnected(true)
	defer l.setConnected(false)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		<-sctx.Done()
		if ctx.Err() != nil {
			ws.Close(websocket.StatusNormalClosure, "listener closing")
		} else {
			ws.CloseNow()
		}
	})
	wg.Go(func() { s.pingLoop(); scancel() })
	wg.Go(func() { s.writeLoop(); scancel() })
	wg.Go(func() { s.renewLoop(expiry) })
	err := s.readLoop()
	scancel()
	return err
}

// pingLoop pings every PingInterval (minus up to 10% jitter) and returns
// when a pong does not come back within the interval.
func (s *session) pingLoop() {
	iv := s.l.cfg.PingInterval
	for {
		d := iv - time.Duration(rand.Int64N(int64(iv)/10+1))
		if !sleepCtx(s.ctx, d) {
			return
		}
		pctx, cancel := context.WithTimeout(s.ctx, iv)
		err := s.ws.Ping(pctx)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.l.log.Warn("control channel ping failed", "err", err)
			}
			return
		}
	}
}

// renewLoop sends renewToken RenewBefore before each token's expiry.
func (s *session) renewLoop(expiry time.Time) {
	cfg := &s.l.cfg
	if cfg.RenewBefore < 0 || !cfg.Credentials.renewable() {
		return
	}
	var retryIn time.Duration
	for {
		d := max(expiry.Sub(cfg.Now())-cfg.RenewBefore, 50*time.Millisecond, retryIn)
		if !sleepCtx(s.ctx, d) {
			return
		}
		tok, exp, retry, err := s.l.renewedToken(s.ctx, expiry)
		if err != nil {
			s.l.log.Error("token renewal", "err", err)
			return
		}
		if retryIn = retry; tok == "" {
			continue // no newer token yet
		}
		msg, err := EncodeControlMessage(&ControlMessage{RenewToken: &RenewTokenCommand{Token: tok}})
		if err != nil {
			return
		}
		if err := s.send(msg, nil); err != nil {
			if s.ctx.Err() == nil {
				s.l.log.Warn("token renewal not sent", "err", err)
			}
			return
		}
		s.l.log.Debug("token renewed", "expires", exp)
		expiry = exp
	}
}

// send has writeLoop write a JSON command and, if body is non-nil, one
// binary message right after it, and waits for the write.
func (s *session) send(msg, body []byte) error {
	c := &outCmd{msg: msg, body: body, done: make(chan error, 1)}
	select {
	case s.sendq <- c:
	case <-s.ctx.Done():
		return ErrConnLost
	}
	select {
	case err := <-c.done:
		return err
	case <-s.ctx.Done():
		return ErrConnLost
	}
}

// post queues c (a JSON command and, if c.body is non-nil, one binary
// message right after it) for writeLoop without waiting for the write: an
// HTTP handler's goroutine ends as soon as its response is queued. A write
// that fails ends the session, which logs it.
func (s *session) post(c *outCmd) error {
	select {
	case s.sendq <- c:
		return nil
	case <-s.ctx.Done():
		return ErrConnLost
	}
}

// writeLoop is the control channel's only writer. It takes every command
// queued (up to sendBatch) and, on a corkable connection, writes their
// frames with one syscall: under load, many requests' responses share a
// write and a wake-up of the relay. It returns on the first write error
// or when the session ends.
func (s *session) writeLoop() {
	batch := make([]*outCmd, 0, sendBatch)
	for {
		select {
		case c := <-s.sendq:
			batch = append(batch[:0], c)
		case <-s.ctx.Done():
			return
		}
		if s.raw != nil && len(s.sendq) == 0 {
			// Let handlers that are runnable queue their responses
			// first: under load they then share this write (and the
			// relay's read). Returns at once when nothing else runs.
			runtime.Gosched()
		}
	gather:
		for len(batch) < sendBatch {
			select {
			case c := <-s.sendq:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		if err := s.writeBatch(batch); err != nil {
			return
		}
	}
}

// writeBatch writes batch's commands in order, corked when that saves a
// syscall, and tells each the batch's outcome.
func (s *session) writeBatch(batch []*outCmd) error {
	corked := s.raw != nil && len(batch)+countBodies(batch) > 1
	if corked {
		s.raw.Cork()
	}
	var err error
	for _, c := range batch {
		switch {
		case err != nil:
		case corked:
			// ws.Write only fills the cork buffer, without network I/O:
			// no timeout (a context without Done arms none in
			// coder/websocket, which costs per frame); Uncork's deadline
			// bounds the one real write.
			err = writeFrames(context.Background(), s.ws, c.msg, c.body)
		default:
			err = writeCommand(s.ctx, s.ws, c.msg, c.body)
		}
	}
	if corked {
		if uerr := s.raw.Uncork(time.Now().Add(writeTimeout)); err == nil {
			err = uerr
		}
	}
	for _, c := range batch {
		if c.done != nil {
			c.done <- err
		}
		if c.free != nil {
			c.free.free()
		}
	}
	return err
}

// countBodies is the number of body messages in batch.
func countBodies(batch []*outCmd) int {
	n := 0
	for _, c := range batch {
		if c.body != nil {
			n++
		}
	}
	return n
}

// writeCommand writes msg and optional body with one write timeout each.
// The caller is the connection's only writer.
func writeCommand(ctx context.Context, ws *websocket.Conn, msg, body []byte) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return writeFrames(wctx, ws, msg, body)
}

// writeFrames writes msg and optional body, bounded by ctx.
func writeFrames(ctx context.Context, ws *websocket.Conn, msg, body []byte) error {
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	if body != nil {
		return ws.Write(ctx, websocket.MessageBinary, body)
	}
	return nil
}

// readLoop is the control channel's only reader. It dispatches each
// command to its own goroutine, reading an inline request's body message
// first so that it cannot be mistaken for a command.
func (s *session) readLoop() error {
	var buf []byte // commands are decoded before the next read: one buffer serves them all
	for {
		// Not s.ctx: cancelling a read would drop the conn without a close
		// frame; the session's closer goroutine ends reads instead.
		typ, data, err := readInto(s.ws, buf[:0])
		if err != nil {
			return err
		}
		buf = data
		if typ != websocket.MessageText {
			s.l.log.Debug("ignoring a binary message on the control channel", "bytes", len(data))
			continue
		}
		m, err := DecodeControlMessage(data)
		switch {
		case errors.Is(err, ErrUnknownCommand):
			s.l.log.Debug("ignoring an unknown command", "err", err)
			continue
		case err != nil:
			s.l.log.Warn("ignoring a malformed command", "err", err)
			continue
		}
		switch {
		case m.Accept != nil:
			s.l.spawn(func() { s.l.handleAccept(s.lctx, m.Accept) })
		case m.Request != nil && m.Request.Inline():
			var body []byte
			if m.Request.HasBody() {
				_, body, err = s.ws.Read(context.Background()) // its own buffer: the handler keeps it
				if err != nil {
					return err
				}
			}
			s.l.spawn(func() { s.l.serveInline(s, m.Request, body) })
		case m.Request != nil:
			s.l.spawn(func() { s.l.serveRendezvous(s.lctx, m.Request) })
		default:
			s.l.log.Debug("ignoring an unexpected command on the control channel")
		}
	}
}

// readInto reads one message from ws into buf's spare capacity, growing
// it as needed (coder/websocket's Read allocates for every message).
func readInto(ws *websocket.Conn, buf []byte) (websocket.MessageType, []byte, error) {
	typ, r, err := ws.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return typ, buf, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// Handler goroutines. A request's handler grows its goroutine's stack
// (net/http types, the HTTPHandler, JSON encoding): a finished handler
// goroutine waits a while for the next command instead of exiting, so that
// its grown stack serves the next request instead of being grown again.
const (
	// handlerIdle is how long a handler goroutine waits for more work.
	handlerIdle = 5 * time.Second
	// maxIdleHandlers bounds the handler goroutines waiting for work.
	maxIdleHandlers = 64
)

// spawn runs f on a handler goroutine: an idle one, or a new one when none
// is idle. Run waits for every handler goroutine.
func (l *Listener) spawn(f func()) {
	select {
	case l.work <- f:
	default:
		l.handlers.Add(1)
		go l.handle(f)
	}
}

// handle runs f and then whatever next hands it, until next gives none.
func (l *Listener) handle(f func()) {
	defer l.handlers.Done()
	idle := time.NewTimer(handlerIdle)
	defer idle.Stop()
	for f != nil {
		f()
		f = l.next(idle)
	}
}

// next waits up to handlerIdle for more work and returns it. It returns
// nil, for the goroutine to exit, when none comes, when maxIdleHandlers
// goroutines already wait, or once Run has returned.
func (l *Listener) next(idle *time.Timer) func() {
	defer l.idle.Add(-1)
	if l.idle.Add(1) > maxIdleHandlers {
		return nil
	}
	idle.Reset(handlerIdle)
	select {
	case f := <-l.work:
		return f
	case <-idle.C:
		return nil
	case <-l.stopped:
		return nil
	}
}

var _ io.Closer = (*Listener)(nil)
