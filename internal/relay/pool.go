package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Defaults of PoolConfig.
const (
	defaultPoolSize     = 4
	defaultQueueSize    = 64
	defaultWriteTimeout = 5 * time.Second
	defaultDialTimeout  = 10 * time.Second
	defaultPingInterval = 20 * time.Second
	defaultRenewBefore  = 5 * time.Minute
	// defaultStallCloseAfter: how long a stalled connection is kept open
	// for its listener to resume.
	defaultStallCloseAfter = time.Minute
	// defaultMaxUnsentBytes caps the bytes a connection's socket holds
	// that the relay has not acknowledged: the most one connection can
	// lose when its listener dies.
	defaultMaxUnsentBytes = 256 << 10
	// defaultMaxQueuedBytes caps the bytes waiting in one connection's
	// queue (one message is always accepted by an empty queue).
	defaultMaxQueuedBytes = 1 << 20
	// defaultMaxMessageBytes is the gateway's 1 MiB body limit plus room
	// for the JSON envelope around a posted message.
	defaultMaxMessageBytes = 1<<20 + 64<<10
	// maxPoolSize bounds Size; far more than one gateway needs.
	maxPoolSize = 1024
)

// defaultPoolBackoff is the redial schedule of a pool slot: the first retry
// is immediate, and the cap is short because senders, unlike listeners,
// answer requests that are failing while the slot waits.
var defaultPoolBackoff = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}

// PoolConfig configures a Pool. Zero values mean the documented defaults.
type PoolConfig struct {
	// Credentials name the Hybrid Connection and sign the tokens.
	Credentials Credentials
	// Size is the number of connections kept open (default 4).
	Size int
	// QueueSize is each connection's send queue length (default 64).
	QueueSize int
	// WriteTimeout is the stall threshold (default 5s): a connection whose
	// write blocks this long, whose unacknowledged bytes do not drain for
	// this long, or whose ping is not answered within it, stalls. A
	// stalled connection takes no new messages (its queued ones are
	// retried elsewhere), is replaced by a fresh dial, and stays open so
	// that what it wrote is delivered when the listener resumes; it closes
	// with 1000 once drained.
	WriteTimeout time.Duration
	// StallCloseAfter is how long a stalled connection may stay stalled
	// before it is closed (default 1m); what it had not delivered then is
	// counted in PoolStats.LostFrames and LostBytes.
	StallCloseAfter time.Duration
	// MaxUnsentBytes caps the bytes one connection holds written but not
	// acknowledged by the relay (default 256 KiB; Linux only, where
	// SIOCOUTQ tells; elsewhere only the socket buffer bounds them). It is
	// also the socket's send buffer (SetWriteBuffer(MaxUnsentBytes/2):
	// Linux doubles it). A write waits while it would exceed the cap.
	MaxUnsentBytes int64
	// MaxQueuedBytes caps the bytes waiting in one connection's queue
	// (default 1 MiB); with QueueSize it bounds the wait of an accepted
	// message. A message that fits no queue gets ErrOverloaded at once.
	MaxQueuedBytes int64
	// MaxQueueWait, when set, is the longest a message may wait in a
	// connection's queue before the writer takes it: then Send withdraws
	// it and returns ErrOverloaded (never written, safe to retry), so that
	// a connection whose writes have slowed down cannot hold an accepted
	// message for long. 0: no limit (the Send context still applies).
	MaxQueueWait time.Duration
	// MaxConnAge, when set, replaces each connection after this age,
	// jittered by ±20%, make-before-break, so that listeners that joined
	// later get a share of the connections. 0 keeps connections until
	// their token needs renewing.
	MaxConnAge time.Duration
	// RetryWait is how long Send may wait for a ready connection when
	// none is (a replacement being dialled, a listener restarting), within
	// its ctx. 0 fails at once with ErrUnavailable.
	RetryWait time.Duration
	// DialTimeout bounds each dial, handshake included (default 10s).
	DialTimeout time.Duration
	// PingInterval is the keepalive period, plus up to 10% jitter
	// (default 20s). A connection that has run this long without failing
	// counts as healthy and resets its slot's backoff.
	PingInterval time.Duration
	// TokenTTL is the lifetime of the tokens the pool mints (default 1h).
	TokenTTL time.Duration
	// RenewBefore: a connection is replaced this long before its token
	// expires (default 5m; must be shorter than TokenTTL). The replacement
	// is dialled first; the old connection then flushes its queue and
	// closes with 1000.
	RenewBefore time.Duration
	// MaxMessageBytes is the largest message Send accepts and the read
	// limit of every connection (default 1 MiB + 64 KiB).
	MaxMessageBytes int64
	// Backoff is the redial schedule, jittered by ±20% and held at its
	// last step; nil means 0, 250ms, 500ms, 1s, 2s, then every 5s.
	Backoff []time.Duration
	// HTTPClient dials the relay (TLS settings). nil means a client of the
	// pool's own: a clone of http.DefaultTransport without keep-alives,
	// released by Close.
	HTTPClient *http.Client
	// Now is the clock for token minting and expiry; nil means time.Now.
	Now func() time.Time
	// TokenPlacement is where dials put the token: header (""), query, or
	// auto (header first, the query after a 401, then the query only).
	TokenPlacement TokenPlacement
}

// withDefaults fills zero fields and rejects invalid ones.
func (cfg PoolConfig) withDefaults() (PoolConfig, error) {
	c := cfg.Credentials
	if c.Host == "" || c.EntityPath == "" {
		return cfg, fmt.Errorf("relay: pool: %w: host and entity path are required", ErrInvalidCredentials)
	}
	if c.KeyName != "" || c.Key != "" || c.SharedAccessSignature != "" {
		if err := c.Validate(); err != nil {
			return cfg, fmt.Errorf("relay: pool: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
		def  int64
		p    func(int64)
	}{
		{"Size", int64(cfg.Size), defaultPoolSize, func(v int64) { cfg.Size = int(v) }},
		{"QueueSize", int64(cfg.QueueSize), defaultQueueSize, func(v int64) { cfg.QueueSize = int(v) }},
		{"WriteTimeout", int64(cfg.WriteTimeout), int64(defaultWriteTimeout), func(v int64) { cfg.WriteTimeout = time.Duration(v) }},
		{"DialTimeout", int64(cfg.DialTimeout), int64(defaultDialTimeout), func(v int64) { cfg.DialTimeout = time.Duration(v) }},
		{"PingInterval", int64(cfg.PingInterval), int64(defaultPingInterval), func(v int64) { cfg.PingInterval = time.Duration(v) }},
		{"TokenTTL", int64(cfg.TokenTTL), int64(DefaultTokenTTL), func(v int64) { cfg.TokenTTL = time.Duration(v) }},
		{"RenewBefore", int64(cfg.RenewBefore), int64(defaultRenewBefore), func(v int64) { cfg.RenewBefore = time.Duration(v) }},
		{"MaxMessageBytes", cfg.MaxMessageBytes, defaultMaxMessageBytes, func(v int64) { cfg.MaxMessageBytes = v }},
		{"StallCloseAfter", int64(cfg.StallCloseAfter), int64(defaultStallCloseAfter), func(v int64) { cfg.StallCloseAfter = time.Duration(v) }},
		{"MaxUnsentBytes", cfg.MaxUnsentBytes, defaultMaxUnsentBytes, func(v int64) { cfg.MaxUnsentBytes = v }},
		{"MaxQueuedBytes", cfg.MaxQueuedBytes, defaultMaxQueuedBytes, func(v int64) { cfg.MaxQueuedBytes = v }},
		{"MaxConnAge", int64(cfg.MaxConnAge), 0, func(v int64) { cfg.MaxConnAge = time.Duration(v) }},
		{"MaxQueueWait", int64(cfg.MaxQueueWait), 0, func(v int64) { cfg.MaxQueueWait = time.Duration(v) }},
		{"RetryWait", int64(cfg.RetryWait), 0, func(v int64) { cfg.RetryWait = time.Duration(v) }},
	} {
		switch {
		case f.v < 0:
			return cfg, fmt.Errorf("relay: pool: %s must not be negative", f.name)
		case f.v == 0:
			f.p(f.def)
		}
	}
	if err := cfg.TokenPlacement.Validate(); err != nil {
		return cfg, fmt.Errorf("relay: pool: %w", err)
	}
	if cfg.Size > maxPoolSize {
		return cfg, fmt.Errorf("relay: pool: Size must be at most %d", maxPoolSize)
	}
	if cfg.RenewBefore >= cfg.TokenTTL {
		return cfg, fmt.Errorf("relay: pool: RenewBefore (%v) must be shorter than TokenTTL (%v)", cfg.RenewBefore, cfg.TokenTTL)
	}
	for _, d := range cfg.Backoff {
		if d < 0 {
			return cfg, errors.New("relay: pool: Backoff steps must not be negative")
		}
	}
	if cfg.Backoff == nil {
		cfg.Backoff = defaultPoolBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// PoolStats is a snapshot of a Pool, for /readyz and the console.
type PoolStats struct {
	Size       int // configured connections
	Ready      int // connections carrying messages
	Connecting int // dials in progress, replacements included
	Backoff    int // slots waiting before their next dial
	Retiring   int // replaced connections flushing their queue
	Stalled    int // connections whose listener stopped reading, kept open to drain
	Queued     int // messages waiting in the ready connections' queues

	// LostFrames and LostBytes count what stalled connections closed
	// after StallCloseAfter may have lost: frames written (answered
	// "sent") but not acknowledged by the relay, and their bytes.
	LostFrames uint64
	LostBytes  uint64

	Dials      uint64 // successful dials since NewPool
	DialErrors uint64 // failed dials since NewPool
	Renewals   uint64 // connections replaced before their token expired

	// Reason says why the pool is not ready; empty when it is.
	Reason string
}

// Pool is the gateway's sender: Size long-lived connect WebSockets to one
// Hybrid Connection, dialled in the background by NewPool and kept warm.
// Each connection has one writer goroutine with a bounded queue and one
// reader (and a pinger while a ping is outstanding). Per slot, the writer
// of the slot's connection, or a goroutine started to dial, redials with
// capped, jittered backoff after a failure and replaces each connection
// before its token expires (see slot).
// The relay picks a listener per connection, so spreading messages over
// the connections spreads them over listeners.
//
// All methods are safe for concurrent use. Request contexts never reach a
// connection: a ctx given to Send bounds only enqueueing and waiting for
// the write, and cancelling it never closes a pooled connection.
type Pool struct {
	// Static after construction.
	cfg     PoolConfig
	log     *slog.Logger
	m       Metrics
	ctx     context.Context // hard lifetime of every conn; cancelled by abort
	abort   context.CancelFunc
	dialCtx context.Context // parent of dials; cancelled when Close starts
	noDial  context.CancelFunc
	placer  *tokenPlacer // where dials put the token (learns under TokenAuto)
	// free recycles outMsgs. A buffered channel rather than a sync.Pool:
	// it is bounded, and it keeps the send path allocation-free also under
	// the race detector, which makes sync.Pool drop items at random.
	free      chan *outMsg
	ownClient bool          // cfg.HTTPClient was made by NewPool; Close releases it
	stopping  chan struct{} // closed when Close starts
	done      chan struct{} // closed when every goroutine has exited
	wg        sync.WaitGroup

	// Accessed atomically.
	healthy    atomic.Pointer[[]*conn] // ready conns; Send's view, copy-on-write under mu
	next       atomic.Uint32           // round-robin cursor
	closed     atomic.Bool
	dials      atomic.Uint64
	dialErrors atomic.Uint64
	renewals   atomic.Uint64
	lostFrames atomic.Uint64
	lostBytes  atomic.Uint64

	closeOnce sync.Once

	// Guarded by mu. mu is never held across I/O or a blocking operation.
	mu      sync.Mutex
	counts  [numStates]int
	reason  string        // why not ready, when no conn is
	failErr error         // what Send returns when no conn is ready
	changed chan struct{} // closed and replaced on every readiness change
}

// NewPool validates cfg, starts one dialling goroutine per slot and
// returns at once: the connections are dialled in the background
// (WaitReady waits for the first). log and m may be nil. Close must be called to release the
// connections.
func NewPool(cfg PoolConfig, log *slog.Logger, m Metrics) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = nopMetrics{}
	}
	p := &Pool{
		cfg:      cfg,
		log:      log.With("entity", cfg.Credentials.EntityPath),
		m:        m,
		free:     make(chan *outMsg, cfg.Size*cfg.QueueSize+cfg.Size),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		reason:   "connecting",
		failErr:  fmt.Errorf("%w: connecting", ErrUnavailable),
		placer:   &tokenPlacer{p: cfg.TokenPlacement},
	}
	if p.cfg.HTTPClient == nil {
		// No keep-alives: a successful dial is hijacked anyway, and
		// without them a dial cancelled by Close cannot leave an unused
		// connection in the idle pool, which would hold up the relay's
		// graceful shutdown (http.Server counts a connection that never
		// sent a request as active for 5 s).
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		p.cfg.HTTPClient = &http.Client{Transport: tr}
		p.ownClient = true
	}
	// The tapped client is a clone of the caller's: ours to release.
	if c, ok := tappedClient(p.cfg.HTTPClient); ok {
		p.cfg.HTTPClient, p.ownClient = c, true
	}
	p.ctx, p.abort = context.WithCancel(context.Background())
	p.dialCtx, p.noDial = context.WithCancel(p.ctx)
	p.healthy.Store(new([]*conn))
	p.wg.Add(cfg.Size)
	for i := range cfg.Size {
		s := &slot{p: p, i: i, bo: newBackoff(p.cfg.Backoff), busy: true}
		go s.serve(nil, false)
	}
	return p, nil
}

// Send writes m as one WebSocket message on a ready connection and returns
// nil once its frame is in the socket (the relay may not have read it yet;
// at most MaxUnsentBytes per connection are in that state). It never blocks
// on a full queue:
//
//   - every ready connection's queue is full (by count or by bytes) →
//     ErrOverloaded;
//   - no connection is ready → after waiting up to RetryWait (within ctx)
//     for one, an error matching ErrUnavailable, with the reason ("no
//     listener connected", "listeners not reading", …); or, when the relay
//     refused the pool's credentials, one matching ErrUnauthorized or
//     ErrForbidden;
//   - the pool is closed → ErrClosed; m too large → ErrMessageTooLarge;
//   - the connection failed while m's frame was partly written →
//     ErrPartialWrite (m may have been delivered; never retried).
//
// If the connection carrying m dies or stalls before writing any of it, m
// is retried on another connection (at most once on the wire). ctx and
// m.Deadline bound enqueueing and waiting; when either ends first, Send
// returns ctx.Err() (or context.DeadlineExceeded) and m is not sent —
// unless the write had already begun, in which case Send waits for it and
// reports its result. The pool does not retain m.Data after Send returns.
// Send does not allocate.
func (p *Pool) Send(ctx context.Context, m Message) error {
	if p.closed.Load() {
		p.m.Rejected("closed")
		return ErrClosed
	}
	if m.Type != MessageText && m.Type != MessageBinary {
		p.m.Rejected("invalid_type")
		return fmt.Errorf("relay: invalid message type %v", m.Type)
	}
	if int64(len(m.Data)) > p.cfg.MaxMessageBytes {
		p.m.Rejected("too_large")
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(m.Data), p.cfg.MaxMessageBytes)
	}
	if err := ended(ctx, m.Deadline); err != nil {
		return p.rejected(err)
	}
	om := p.getMsg(m)
	var waitUntil time.Time
	for attempt := 0; ; attempt++ {
		c, live := p.enqueue(om)
		if c == nil {
			if live > 0 {
				p.putMsg(om)
				p.m.Rejected("queue_full")
				return ErrOverloaded
			}
			if err := p.awaitConn(ctx, m.Deadline, &waitUntil, nil); err != nil {
				p.putMsg(om)
				return err
			}
			continue
		}
		err, owned := c.wait(ctx, om)
		if err != ErrConnLost {
			if owned {
				p.putMsg(om)
			}
			switch {
			case err == ErrPartialWrite:
				p.m.Rejected("partial_write")
				return err
			case err == errQueueWait:
				p.m.Rejected("queue_wait")
				return ErrOverloaded
			case err != nil: // ctx or the deadline ended first
				return p.rejected(err)
			}
			return nil
		}
		// c died or stalled before writing om: try another connection.
		if owned {
			om.state.Store(msgQueued)
		} else {
			om = p.getMsg(m)
		}
		stop := ended(ctx, m.Deadline)
		switch {
		case p.closed.Load():
			p.putMsg(om)
			p.m.Rejected("closed")
			return ErrClosed
		case stop != nil:
			p.putMsg(om)
			return p.rejected(stop)
		case attempt >= p.cfg.Size:
			// Connections keep failing under it: wait for a change.
			if err := p.awaitConn(ctx, m.Deadline, &waitUntil, ErrConnLost); err != nil {
				p.putMsg(om)
				return err
			}
		}
	}
}

// awaitConn waits, until *until (set on the first call to RetryWait from
// now, or to deadline if that is sooner) or ctx ends, for the pool's
// readiness to change. It returns nil when a connection may be ready,
// else the error Send returns. cause is added to the ErrUnavailable error.
func (p *Pool) awaitConn(ctx context.Context, deadline time.Time, until *time.Time, cause error) error {
	if until.IsZero() {
		*until = time.Now().Add(p.cfg.RetryWait)
		if !deadline.IsZero() && deadline.Before(*until) {
			// The send timeout runs out waiting for a listener: that is
			// "unavailable", not a slow write.
			*until = deadline
		}
	}
	p.mu.Lock()
	ready, failErr, ch := p.counts[StateReady] > 0, p.failErr, p.changed
	p.mu.Unlock()
	if ready {
		return nil
	}
	wait := time.Until(*until)
	if wait <= 0 || errors.Is(failErr, ErrUnauthorized) || errors.Is(failErr, ErrForbidden) {
		return p.unavailable(cause)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return p.unavailable(cause)
	case <-p.stopping:
		p.m.Rejected("closed")
		return ErrClosed
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The send timeout ran out waiting for a listener: that is
			// "unavailable", not a slow write.
			return p.unavailable(cause)
		}
		return p.rejected(ctx.Err())
	}
}

// enqueue puts om in the queue of the next ready conn, round-robin, moving
// on to the next one when a queue is full. It returns the conn, or nil and
// the number of live conns it tried.
func (p *Pool) enqueue(om *outMsg) (*conn, int) {
	conns := *p.healthy.Load()
	n := len(conns)
	if n == 0 {
		return nil, 0
	}
	start := int(p.next.Add(1) % uint32(n))
	live := 0
	for i := range n {
		c := conns[(start+i)%n]
		if c.down.Load() {
			continue
		}
		live++
		size := int64(len(om.data))
		if q := c.queued.Load(); q > 0 && q+size > p.cfg.MaxQueuedBytes {
			continue
		}
		c.queued.Add(size)
		select {
		case c.sendq <- om:
			return c, live
		default:
			c.queued.Add(-size)
		}
	}
	return nil, live
}

// ended returns ctx's error, or context.DeadlineExceeded once deadline (if
// not zero) has passed, or nil.
func ended(ctx context.Context, deadline time.Time) error {
	if done := ctx.Done(); done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// rejected counts and returns err, a context's error.
func (p *Pool) rejected(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		p.m.Rejected("deadline")
	} else {
		p.m.Rejected("canceled")
	}
	return err
}

// unavailable counts and returns the error for "no ready connection".
func (p *Pool) unavailable(cause error) error {
	if p.closed.Load() {
		p.m.Rejected("closed")
		return ErrClosed
	}
	p.mu.Lock()
	err := p.failErr
	if p.counts[StateStalled] > 0 {
		err = errNotReading
	}
	p.mu.Unlock()
	switch {
	case errors.Is(err, ErrUnauthorized):
		p.m.Rejected("unauthorized")
	case errors.Is(err, ErrForbidden):
		p.m.Rejected("forbidden")
	default:
		p.m.Rejected("unavailable")
	}
	if cause != nil {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

func (p *Pool) getMsg(m Message) *outMsg {
	var om *outMsg
	select {
	case om = <-p.free:
	default:
		om = &outMsg{done: make(chan error, 1)}
	}
	om.typ = websocket.MessageType(m.Type)
	om.data = m.Data
	om.id = m.ID
	om.deadline = m.Deadline
	om.state.Store(msgQueued)
	return om
}

// putMsg recycles om; the caller must hold the only reference.
func (p *Pool) putMsg(om *outMsg) {
	om.data, om.id, om.deadline = nil, "", time.Time{}
	select {
	case p.free <- om:
	default:
	}
}

// Ready reports whether at least one connection is ready and the pool is
// not closing, and otherwise why not: "connecting", "no listener
// connected", "listeners not reading" (every connection stalled),
// "relay refused credentials", "relay unreachable", "relay timed out",
// "relay error", "connection lost; reconnecting" or "draining".
func (p *Pool) Ready() (ok bool, reason string) {
	if p.closed.Load() {
		return false, "draining"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts[StateReady] > 0 {
		return true, ""
	}
	if p.counts[StateStalled] > 0 {
		return false, reasonNotReading
	}
	return false, p.reason
}

// reasonNotReading is why the pool is not ready while its connections are
// stalled.
const reasonNotReading = "listeners not reading"

var errNotReading = fmt.Errorf("%w: %s", ErrUnavailable, reasonNotReading)

// WaitReady waits until a connection is ready. It returns early with the
// refusal when the relay refuses the credentials (which waiting will not
// fix), with ErrClosed when the pool closes, and with ctx's error, naming
// the reason the pool is not ready, when ctx ends.
func (p *Pool) WaitReady(ctx context.Context) error { return p.waitReady(ctx, 1) }

// WaitAllReady waits until every connection of the pool is ready at once,
// and ends early as WaitReady does; when ctx ends first, the error says
// how many were ready.
func (p *Pool) WaitAllReady(ctx context.Context) error { return p.waitReady(ctx, p.cfg.Size) }

// waitReady waits until n connections are ready (see WaitReady).
func (p *Pool) waitReady(ctx context.Context, n int) error {
	for {
		if p.closed.Load() {
			return ErrClosed
		}
		p.mu.Lock()
		ready, reason, err, ch := p.counts[StateReady], p.reason, p.failErr, p.changed
		p.mu.Unlock()
		switch {
		case ready >= n:
			return nil
		case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
			return err
		}
		select {
		case <-ch:
		case <-p.stopping:
		case <-ctx.Done():
			if ready > 0 {
				return fmt.Errorf("relay: %d of %d connections ready: %w", ready, n, ctx.Err())
			}
			return fmt.Errorf("relay: pool not ready (%s): %w", reason, ctx.Err())
		}
	}
}

// Stats returns a snapshot of the pool's connections.
func (p *Pool) Stats() PoolStats {
	_, reason := p.Ready()
	s := PoolStats{
		Size:       p.cfg.Size,
		Dials:      p.dials.Load(),
		DialErrors: p.dialErrors.Load(),
		Renewals:   p.renewals.Load(),
		LostFrames: p.lostFrames.Load(),
		LostBytes:  p.lostBytes.Load(),
		Reason:     reason,
	}
	for _, c := range *p.healthy.Load() {
		s.Queued += len(c.sendq)
	}
	p.mu.Lock()
	s.Ready = p.counts[StateReady]
	s.Connecting = p.counts[StateConnecting]
	s.Backoff = p.counts[StateBackoff]
	s.Retiring = p.counts[StateRetiring]
	s.Stalled = p.counts[StateStalled]
	p.mu.Unlock()
	return s
}

// Close stops dialling, makes Send return ErrClosed, and closes every
// connection with 1000 (normal closure) after it has written what was already
// queued. It waits for every goroutine of the pool to exit, or until ctx
// ends; then it closes the remaining connections without a handshake and
// returns ctx's error — unless only stalled connections were left (they
// had until ctx ended to drain; what they may lose is counted in
// PoolStats.LostFrames). Calling Close again waits the same way.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.mu.Lock()
		p.reason = "draining"
		p.notifyLocked()
		p.mu.Unlock()
		close(p.stopping)
		p.noDial()
		go func() {
			p.wg.Wait()
			p.abort()
			if p.ownClient {
				p.cfg.HTTPClient.CloseIdleConnections()
			}
			close(p.done)
		}()
	})
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	// Time is up. Stalled connections were given the chance to drain
	// (what they lose now is counted); anything else overran.
	p.mu.Lock()
	others := p.counts[StateReady] + p.counts[StateConnecting] + p.counts[StateBackoff] + p.counts[StateRetiring]
	p.mu.Unlock()
	p.abort()
	if others == 0 {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-p.done:
			return nil
		case <-t.C:
		}
	}
	return fmt.Errorf("relay: pool close: %w", ctx.Err())
}

// slot supervises one of the pool's connections until Close: it dials,
// replaces the connection before its token expires or at its maximum age
// (make-before-break), and redials with backoff after a failure. It has
// no goroutine of its own, which an idle pool would pay a stack for per
// connection: the goroutine that dialled the slot's connection goes on as
// its writer (conn.run) and, when the connection ends, back to dialling
// (serve); a replacement while the connection is still up (renewal, a
// stall) is dialled by a goroutine started for it, which then becomes the
// new connection's writer. busy makes one goroutine at a time act for the
// slot: the others' events are ignored, and the busy one looks at the
// current connection again when it is done.
type slot struct {
	p   *Pool
	i   int
	bo  *backoff // used by the busy goroutine only
	gen uint64   // used by the busy goroutine only

	mu   sync.Mutex
	cur  *conn // the connection the slot keeps up; nil before the first
	busy bool  // a goroutine is dialling for the slot
}

// newConn makes the slot's next connection (not yet dialled).
func (s *slot) newConn() *conn {
	s.gen++
	return &conn{
		p:       s.p,
		sl:      s,
		gen:     s.gen,
		log:     s.p.log.With("slot", s.i, "gen", s.gen),
		sendq:   make(chan *outMsg, s.p.cfg.QueueSize),
		retire:  make(chan struct{}),
		stalled: make(chan struct{}),
	}
}

// serve is a goroutine acting for the slot (busy), counted in p.wg. It
// dials until a connection is up (waiting the backoff first when wait is
// set), unless given c, already up; runs it as its writer; and when it
// has ended, dials again if the slot is still its own. It returns when
// the pool closes or another goroutine acts for the slot.
func (s *slot) serve(c *conn, wait bool) {
	defer s.p.wg.Done()
	for {
		if c == nil {
			c = s.newConn()
			if !s.p.connect(c, s.bo, wait) {
				return
			}
			s.install(c)
		}
		c.run()
		if !s.ended(c) {
			return
		}
		if time.Since(c.started) >= time.Second || c.pongs.Load() > 0 {
			s.bo.Reset() // it ran; its listener went away: redial at once
		}
		c, wait = nil, true
	}
}

// install makes c, dialled and ready, the slot's connection and arms its
// replacement; the caller stops acting for the slot.
func (s *slot) install(c *conn) {
	t, renew := s.p.renewTimer(c)
	s.mu.Lock()
	c.renewT, c.renewing = t, renew
	s.cur, s.busy = c, false
	s.mu.Unlock()
}

// ended records that c's writer has returned and reports whether its
// goroutine is to act for the slot next (dial a successor).
func (s *slot) ended(c *conn) bool {
	c.renewT.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	c.over = true
	if s.cur != c || s.busy || s.p.isStopping() {
		return false
	}
	s.busy = true
	return true
}

// claim makes the caller act for the slot on behalf of c, its current
// connection, and counts the goroutine the caller then starts in p.wg. It
// fails when c is no longer current, has ended, another goroutine acts
// for the slot or the pool is closing. It is called by c's own goroutines
// (or its write timer while c's writer is blocked in a write), so c's
// writer, itself counted, is still running: p.wg is above zero.
func (s *slot) claim(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != c || s.busy || c.over || s.p.isStopping() {
		return false
	}
	s.busy = true
	s.p.wg.Add(1)
	return true
}

// stalled replaces c, whose listener stopped reading; c drains (or is
// closed) on its own. At once, unless replacements keep stalling: then
// with backoff.
func (s *slot) stalled(c *conn) {
	if s.claim(c) {
		go s.serve(nil, true)
	}
}

// renewDue replaces c make-before-break: its token is about to expire
// or it reached its maximum age. Called by c's writer when c.renewT fires.
func (s *slot) renewDue(c *conn) {
	if s.claim(c) {
		go s.renew(c)
	}
}

// renew dials c's replacement; on success it retires c and goes on as the
// replacement's writer. On failure c is kept (an established connection
// outlives its token) and tried again soon, unless c ended or stalled
// meanwhile: then renew goes on dialling for the slot.
func (s *slot) renew(c *conn) {
	s.mu.Lock()
	renew := c.renewing
	s.mu.Unlock()
	next := s.newConn()
	if renew {
		next.expires = c.expires // a token source must bring a later token
	}
	if s.p.dialInto(next) {
		if renew {
			s.p.renewals.Add(1)
		}
		s.install(next)
		s.p.retireConn(c, websocket.StatusNormalClosure, "connection replaced")
		s.serve(next, true)
		return
	}
	s.p.move(next, StateNone)
	s.mu.Lock()
	if c.over || c.isStalled() {
		s.mu.Unlock()
		if c.over && (time.Since(c.started) >= time.Second || c.pongs.Load() > 0) {
			s.bo.Reset()
		}
		s.serve(nil, true)
		return
	}
	c.replaceAt = time.Now().Add(s.p.retryReplace())
	if renew {
		c.expires = s.p.cfg.Now().Add(s.p.cfg.RenewBefore / 5).Add(s.p.cfg.RenewBefore)
	}
	d, renew := s.p.renewDelayOf(c)
	c.renewing = renew
	s.busy = false
	s.mu.Unlock()
	if d >= 0 {
		c.renewT.Reset(d)
	}
	s.p.wg.Done()
}

// isStopping reports whether Close has started.
func (p *Pool) isStopping() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

// renewTimer fires when c is due for replacement: before its token
// expires (renew is then true), or at its jittered maximum age. It never
// fires when neither applies (until Reset).
func (p *Pool) renewTimer(c *conn) (t *time.Timer, renew bool) {
	d, renew := p.renewDelayOf(c)
	if d < 0 {
		t = time.NewTimer(time.Hour)
		t.Stop()
		return t, false
	}
	return time.NewTimer(d), renew
}

// renewDelayOf is how long until c is due for replacement (renew: before
// its token expires; else at its maximum age), or -1 when never.
func (p *Pool) renewDelayOf(c *conn) (d time.Duration, renew bool) {
	d = -1
	if !c.expires.IsZero() {
		d, renew = p.renewDelay(c), true
	}
	if !c.replaceAt.IsZero() {
		if a := max(time.Until(c.replaceAt), 0); d < 0 || a < d {
			d, renew = a, false
		}
	}
	return d, renew
}

// retryReplace is how long to wait after a failed make-before-break dial.
func (p *Pool) retryReplace() time.Duration {
	if p.cfg.MaxConnAge > 0 {
		return p.cfg.MaxConnAge / 4
	}
	return p.cfg.RenewBefore / 5
}

// ageDelay is MaxConnAge ±20%, or 0 when connections have no maximum age.
func (p *Pool) ageDelay() time.Duration {
	a := p.cfg.MaxConnAge
	if a <= 0 {
		return 0
	}
	return a - a/5 + time.Duration(rand.Int64N(int64(a)*2/5+1))
}

// connect dials until c is up (waiting the backoff first when wait is set
// and after each failure) and reports false when the pool is closing.
func (p *Pool) connect(c *conn, bo *backoff, wait bool) bool {
	for {
		if wait {
			if d := bo.Next(); d > 0 {
				p.move(c, StateBackoff)
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-p.stopping:
					t.Stop()
					p.move(c, StateNone)
					return false
				}
			}
		}
		wait = true
		if p.dialInto(c) {
			return true
		}
		select {
		case <-p.stopping:
			p.move(c, StateNone)
			return false
		default:
		}
	}
}

// dialInto dials once for c; on success it publishes c, whose writer
// (run) the caller then becomes. The dial runs in a goroutine of its own
// that exits with it: a dial grows its stack to several KiB, which the
// caller, the conn's writer for hours afterwards, would otherwise keep.
func (p *Pool) dialInto(c *conn) bool {
	ok := make(chan bool, 1)
	go func() { ok <- p.dial(c) }()
	return <-ok
}

// dial is dialInto in the dialling goroutine.
func (p *Pool) dial(c *conn) bool {
	p.move(c, StateConnecting)
	ctx, cancel := context.WithTimeout(p.dialCtx, p.cfg.DialTimeout)
	defer cancel()
	now := p.cfg.Now()
	creds, exp, err := p.dialCredentials(ctx, now, c.expires)
	if errors.Is(err, errStaleToken) {
		return false // a renewal too early for the token source; not a failure
	}
	var ws *websocket.Conn
	tap := &tapSlot{sendBuffer: int(p.cfg.MaxUnsentBytes / 2)}
	ctx = context.WithValue(ctx, tapKey{}, tap)
	if err == nil {
		ws, err = dialPlaced(ctx, creds, DialOptions{
			TokenTTL:   p.cfg.TokenTTL,
			HTTPClient: p.cfg.HTTPClient,
			ReadLimit:  p.cfg.MaxMessageBytes,
			Now:        p.cfg.Now,
		}, p.placer)
	}
	if err != nil {
		if p.dialCtx.Err() != nil {
			p.m.Dialed("canceled")
			return false
		}
		p.dialFailed(c, err)
		return false
	}
	ws.SetReadLimit(p.cfg.MaxMessageBytes)
	p.dials.Add(1)
	p.m.Dialed("ok")

	c.ws = ws
	c.ctx, c.cancel = context.WithCancelCause(p.ctx)
	c.wctx = context.WithoutCancel(c.ctx)
	c.started = time.Now()
	c.expires = exp
	c.wtimer = time.AfterFunc(time.Hour, c.writeExpired)
	c.wtimer.Stop()
	c.ktimer = time.AfterFunc(time.Hour, c.writeKilled)
	c.ktimer.Stop()
	c.tap = tap.conn
	if a := p.ageDelay(); a > 0 {
		c.replaceAt = c.started.Add(a)
	}

	// Publish before starting run: if run fails at once, markDown must
	// find c ready to take it out of rotation again.
	p.move(c, StateReady)
	c.log.Info("relay connection ready")
	return true
}

// tokenExpiry returns when the token minted at now expires, or zero when
// there is nothing to renew (a fixed SAS token, or anonymous access).
func (p *Pool) tokenExpiry(now time.Time) time.Time {
	c := p.cfg.Credentials
	if c.SharedAccessSignature != "" || c.Key == "" {
		return time.Time{}
	}
	// Credentials.Token truncates to the second; so do we, never later.
	return now.Add(p.cfg.TokenTTL).Truncate(time.Second)
}

// renewDelay returns how long until c should be replaced: RenewBefore
// ahead of its token's expiry, minus up to 10% of RenewBefore so that
// connections dialled together are not all replaced at once.
func (p *Pool) renewDelay(c *conn) time.Duration {
	j := time.Duration(rand.Int64N(int64(p.cfg.RenewBefore)/10 + 1))
	return max(c.expires.Sub(p.cfg.Now())-p.cfg.RenewBefore-j, 0)
}

// pingDelay returns PingInterval plus up to 10% jitter.
func (p *Pool) pingDelay() time.Duration {
	return p.cfg.PingInterval + time.Duration(rand.Int64N(int64(p.cfg.PingInterval)/10+1))
}

// dialFailed records a failed dial as the reason the pool is not ready.
func (p *Pool) dialFailed(c *conn, err error) {
	p.dialErrors.Add(1)
	result, reason := dialReason(err)
	p.m.Dialed(result)
	// Keep the typed cause in the chain, so a 404 ("no listener")
	// matches ErrNoListener as well as ErrUnavailable.
	failErr := fmt.Errorf("%w: %s: %w", ErrUnavailable, reason, err)
	if result == "network" {
		// Network errors may quote the dial URL; keep only the cause.
		failErr = fmt.Errorf("%w: %w", ErrUnavailable, ErrUnreachable)
	}
	if result == "unauthorized" || result == "forbidden" {
		failErr = fmt.Errorf("relay: relay refused credentials: %w", err)
	}
	p.mu.Lock()
	changed := p.reason != reason
	p.reason, p.failErr = reason, failErr
	p.notifyLocked()
	p.mu.Unlock()
	if changed {
		c.log.Warn("relay dial failed", "reason", reason, "err", err)
	} else if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("relay dial failed", "reason", reason, "err", err)
	}
}

// dialReason classifies a dial error as a metrics label and a Ready reason.
func dialReason(err error) (result, reason string) {
	switch {
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized", "relay refused credentials"
	case errors.Is(err, ErrForbidden):
		return "forbidden", "relay refused credentials"
	case errors.Is(err, ErrNoListener):
		return "not_found", "no listener connected"
	case errors.Is(err, ErrEntityNotFound):
		return "no_entity", "hybrid connection does not exist"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout", "relay timed out"
	case errors.Is(err, ErrServerError):
		return "relay_error", "relay error"
	case errors.Is(err, ErrTokenSource):
		return "token_source", "token source failed"
	}
	return "network", "relay unreachable"
}

// retireConn takes c out of rotation and asks it to flush and close.
func (p *Pool) retireConn(c *conn, code websocket.StatusCode, reason string) {
	p.mu.Lock()
	if c.state == StateReady {
		p.moveLocked(c, StateRetiring)
	}
	p.mu.Unlock()
	c.retireWith(code, reason)
}

// markStalled takes c out of rotation because its listener stopped
// reading; it stays open to drain.
func (p *Pool) markStalled(c *conn) {
	c.down.Store(true)
	p.mu.Lock()
	if c.state == StateReady || c.state == StateRetiring {
		p.moveLocked(c, StateStalled)
	}
	p.mu.Unlock()
}

// lost records frames (and bytes) a stalled connection may have lost.
func (p *Pool) lost(c *conn, frames, bytes int) {
	p.lostFrames.Add(uint64(frames))
	p.lostBytes.Add(uint64(bytes))
	if lm, ok := p.m.(LossMetrics); ok {
		lm.FramesMaybeLost(frames, bytes)
	}
	c.log.Error("closing a stalled relay connection; frames answered as sent may be lost",
		"frames", frames, "bytes", bytes, "stalled_for", p.cfg.StallCloseAfter)
}

// markDown takes c out of rotation as soon as it fails or retires.
func (p *Pool) markDown(c *conn) {
	c.down.Store(true)
	p.mu.Lock()
	if c.state == StateReady {
		p.moveLocked(c, StateNone)
		if p.counts[StateReady] == 0 && !p.closed.Load() {
			p.reason = "connection lost; reconnecting"
			p.failErr = fmt.Errorf("%w: %s", ErrUnavailable, p.reason)
		}
	}
	p.mu.Unlock()
}

// finished records that c's run has returned.
func (p *Pool) finished(c *conn) { p.move(c, StateNone) }

func (p *Pool) move(c *conn, to ConnState) {
	p.mu.Lock()
	p.moveLocked(c, to)
	p.mu.Unlock()
}

// moveLocked changes c's state, keeps the counts and the ready list in step
// and reports the change.
func (p *Pool) moveLocked(c *conn, to ConnState) {
	from := c.state
	if from == to {
		return
	}
	c.state = to
	if from != StateNone {
		p.counts[from]--
	}
	if to != StateNone {
		p.counts[to]++
	}
	if from == StateReady || to == StateReady {
		old := *p.healthy.Load()
		list := make([]*conn, 0, len(old)+1)
		for _, x := range old {
			if x != c {
				list = append(list, x)
			}
		}
		if to == StateReady {
			list = append(list, c)
		}
		p.healthy.Store(&list)
		p.notifyLocked()
	}
	p.m.ConnStateChanged(from, to)
}

// notifyLocked wakes WaitReady.
func (p *Pool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}
