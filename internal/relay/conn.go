package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// States of an outMsg. The sender and the conn's writer race for a queued
// message with CompareAndSwap, so exactly one of them decides its fate.
const (
	// msgQueued: in a send queue; its sender may still abandon it.
	msgQueued int32 = iota
	// msgTaken: the writer owns it and will answer on done.
	msgTaken
	// msgAbandoned: its sender gave up (request ctx ended or the conn
	// died); whoever dequeues it recycles it without writing.
	msgAbandoned
)

// outMsg is one message travelling through a conn's send queue. It is
// recycled through Pool.free, so the send path does not allocate.
type outMsg struct {
	typ   websocket.MessageType
	data  []byte
	id    string
	state atomic.Int32
	// done carries the write's result. Buffer 1: the writer never blocks
	// on it, whether or not the sender is still waiting.
	done chan error
}

// errRetired ends a conn that was replaced (token renewal) or shut down
// after its writer flushed the queue.
var errRetired = errors.New("relay: connection retired")

// conn is one pooled sender WebSocket and the two goroutines that own it:
// readLoop (the only reader; discards what the listener sends and lets
// Ping see pongs) and writeLoop (the only writer of data frames; drains
// sendq and schedules keepalive pings, each in a short-lived goroutine that
// exists only while a ping is outstanding, so an idle conn costs two
// goroutines besides run). run starts them and returns after all have
// exited. A conn is created by its slot's supervisor once per connection
// attempt; gen numbers them per slot, so logs and eviction always name one
// specific connection and never its replacement.
type conn struct {
	// Static after construction.
	p     *Pool
	slot  int
	gen   uint64
	log   *slog.Logger
	sendq chan *outMsg
	// retire is closed (once, by retireWith) to ask the writer to flush
	// the queue and the conn to close with retireCode.
	retire     chan struct{}
	retireOnce sync.Once
	done       chan struct{} // closed when run has returned

	// Set by Pool.dialInto before run is started and before the conn is
	// published; read-only afterwards.
	ws      *websocket.Conn
	ctx     context.Context         // lifetime: cancelled when the conn goes down
	cancel  context.CancelCauseFunc // cancels ctx
	wctx    context.Context         // ctx without cancellation, for ws calls (see writeMsg)
	started time.Time
	wtimer  *time.Timer

	// Owned by the slot's supervisor.
	expires time.Time // token expiry (pushed back after a failed renewal); zero when not renewable

	// Written by retireWith before closing retire; read after.
	retireCode   websocket.StatusCode
	retireReason string

	// Accessed atomically.
	down     atomic.Bool  // no longer takes messages; Send skips it
	timedOut atomic.Bool  // wtimer fired: a write exceeded WriteTimeout
	pongs    atomic.Int64 // pings answered; a conn with any counts as healthy
	pinging  atomic.Bool  // a ping goroutine is outstanding

	// loops counts readLoop, writeLoop and an outstanding ping; run waits
	// for it. The writer adds the ping while it is itself counted.
	loops sync.WaitGroup

	// Guarded by p.mu.
	state ConnState
}

// run drives the connection until it goes down or is retired, then closes
// it and waits for its goroutines. It must be called once, in its own
// goroutine counted in p.wg. It works like an errgroup (the first loop to
// return ends the others), except that the reader is stopped by closing
// ws rather than by a ctx, so that a retired conn can finish its close
// handshake.
func (c *conn) run() {
	defer close(c.done)
	defer c.p.wg.Done()

	errc := make(chan error, 2)
	wg := &c.loops
	wg.Add(2)
	go func() { defer wg.Done(); errc <- c.readLoop() }()
	go func() { defer wg.Done(); errc <- c.writeLoop() }()

	var err error
	select {
	case err = <-errc:
	case <-c.ctx.Done():
		err = context.Cause(c.ctx)
	}
	if c.timedOut.Load() && !errors.Is(err, errRetired) {
		// The reader may have noticed the closed socket first.
		err = fmt.Errorf("write timed out after %v: %w", c.p.cfg.WriteTimeout, err)
	}
	// Stop taking messages first, so senders waiting on this conn retry
	// elsewhere right away, then stop the writer and any ping.
	c.p.markDown(c)
	c.cancel(err)
	retired := errors.Is(err, errRetired)
	if retired {
		// The queue is flushed; close with a handshake. The reader is
		// still running and sees the relay's close frame.
		_ = c.ws.Close(c.retireCode, c.retireReason)
	} else {
		_ = c.ws.CloseNow()
	}
	wg.Wait()
	c.wtimer.Stop()
	close(errc)

	// Any of the loops may have seen the relay's close frame first.
	code := websocket.StatusCode(-1)
	for e := range errc {
		if s := websocket.CloseStatus(e); s != -1 && code == -1 {
			code = s
		}
	}
	if s := websocket.CloseStatus(err); s != -1 {
		code = s
	}
	lived := time.Since(c.started).Round(time.Millisecond)
	switch {
	case retired:
		c.log.Info("relay connection closed", "code", int(c.retireCode), "reason", c.retireReason, "lived", lived)
	case c.p.ctx.Err() != nil:
		c.log.Info("relay connection aborted by pool close", "lived", lived)
	default:
		if code == -1 {
			code = websocket.StatusAbnormalClosure
		}
		c.p.m.ConnClosed(int(code))
		c.log.Warn("relay connection lost", "code", int(code), "err", err, "lived", lived)
	}
	c.p.finished(c)
}

// retireWith asks the conn to write what is already queued and then close
// with code and reason. Safe to call more than once and from any goroutine;
// the first call wins.
func (c *conn) retireWith(code websocket.StatusCode, reason string) {
	c.retireOnce.Do(func() {
		c.retireCode, c.retireReason = code, reason
		close(c.retire)
	})
}

// readLoop is the conn's only reader. Pooled sender connections carry
// messages one way, so whatever the listener sends is counted and
// discarded; reading is still required for Ping to see pongs and for the
// close handshake. It reads with wctx (no cancellation): closing ws is what
// ends it.
func (c *conn) readLoop() error {
	for {
		_, r, err := c.ws.Reader(c.wctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if c.log.Enabled(c.wctx, slog.LevelDebug) {
			c.log.LogAttrs(c.wctx, slog.LevelDebug, "discarded a message from the listener", slog.Int64("bytes", n))
		}
	}
}

// writeLoop is the only caller of ws.Write. It drains sendq until the conn
// goes down, or, once retired, until the queue is empty. Every
// PingInterval (plus jitter) it starts a ping unless one is outstanding.
func (c *conn) writeLoop() error {
	pingT := time.NewTimer(c.p.pingDelay())
	defer pingT.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return context.Cause(c.ctx)
		case <-pingT.C:
			pingT.Reset(c.p.pingDelay())
			if c.pinging.CompareAndSwap(false, true) {
				c.loops.Add(1)
				go c.ping()
			}
		case om := <-c.sendq:
			if err := c.writeMsg(om); err != nil {
				return err
			}
		case <-c.retire:
			for {
				select {
				case om := <-c.sendq:
					if err := c.writeMsg(om); err != nil {
						return err
					}
				default:
					return errRetired
				}
			}
		}
	}
}

// writeMsg writes one message unless its sender abandoned it, and answers
// on om.done.
//
// The write timeout is a per-conn timer rather than a per-write
// context.WithTimeout(c.ctx, …): coder/websocket arms a context.AfterFunc for
// every write whose ctx can be cancelled, and together with the timer
// context that is several allocations per message. ws.Write therefore gets
// wctx, which is derived from the conn's lifetime ctx but has no Done
// channel, and wtimer closes the conn if the write overruns — exactly what
// coder/websocket does itself when a write ctx expires. Lifetime
// cancellation reaches a blocked write the same way: run closes ws.
func (c *conn) writeMsg(om *outMsg) error {
	if !om.state.CompareAndSwap(msgQueued, msgTaken) {
		c.p.putMsg(om) // abandoned by its sender; we hold the last reference
		return nil
	}
	c.wtimer.Reset(c.p.cfg.WriteTimeout)
	err := c.ws.Write(c.wctx, om.typ, om.data)
	c.wtimer.Stop()
	if err != nil {
		om.done <- ErrConnLost
		return fmt.Errorf("write: %w", err)
	}
	c.p.m.MessageSent(len(om.data))
	if c.log.Enabled(c.wctx, slog.LevelDebug) {
		c.log.LogAttrs(c.wctx, slog.LevelDebug, "sent", slog.String("id", om.id), slog.Int("bytes", len(om.data)))
	}
	om.done <- nil
	return nil
}

// writeExpired is wtimer's function: a write overran WriteTimeout.
func (c *conn) writeExpired() {
	c.timedOut.Store(true)
	_ = c.ws.CloseNow()
}

// ping sends one ping and fails the conn when its pong does not come back
// within WriteTimeout. Like writeMsg, it keeps the lifetime ctx's
// cancellation away from ws: a retiring conn must finish its close
// handshake, not be cut mid-frame.
func (c *conn) ping() {
	defer c.loops.Done()
	defer c.pinging.Store(false)
	pctx, cancel := context.WithTimeout(c.wctx, c.p.cfg.WriteTimeout)
	err := c.ws.Ping(pctx)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.cancel(fmt.Errorf("ping: %w", err))
		}
		return
	}
	c.pongs.Add(1)
}

// wait waits for the result of om, which the caller put in c's queue. It
// returns ErrConnLost if c went down before writing om, so the caller can
// retry elsewhere, and reports whether the caller owns om again (false when
// om was abandoned in the queue; the writer or the garbage collector then
// disposes of it).
func (c *conn) wait(ctx context.Context, om *outMsg) (err error, owned bool) {
	select {
	case err = <-om.done:
		return err, true
	case <-ctx.Done():
		if om.state.CompareAndSwap(msgQueued, msgAbandoned) {
			return ctx.Err(), false
		}
	case <-c.ctx.Done():
		if om.state.CompareAndSwap(msgQueued, msgAbandoned) {
			return ErrConnLost, false
		}
	}
	// The writer took om and answers within WriteTimeout; waiting for it
	// keeps the promise that the pool does not hold Data after Send.
	return <-om.done, true
}
