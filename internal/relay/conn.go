package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
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
	// msgAbandoned: its sender gave up (request ctx ended, the conn died
	// or stalled); whoever dequeues it recycles it without writing.
	msgAbandoned
)

// maxCorkBytes bounds one coalesced write: the writer adds queued messages
// to a batch while it stays below this size.
const maxCorkBytes = 64 << 10

// lossRing is how many frame ends a conn remembers, at most, to count the
// frames a forced close may lose.
const lossRing = 1024

// outMsg is one message travelling through a conn's send queue. It is
// recycled through Pool.free, so the send path does not allocate.
type outMsg struct {
	typ      websocket.MessageType
	data     []byte
	id       string
	deadline time.Time // Message.Deadline
	state    atomic.Int32
	// done carries the write's result: nil, ErrConnLost (never written;
	// the sender retries elsewhere) or ErrPartialWrite. Buffer 1: the
	// writer never blocks on it, whether or not the sender still waits.
	done chan error
	// qt is the MaxQueueWait timer of the Send that owns om, made once
	// and reused with om.
	qt *time.Timer
}

// errQueueWait: the message waited MaxQueueWait in a queue unwritten.
var errQueueWait = errors.New("relay: message waited too long in a connection's queue")

// queueTimer arms om's MaxQueueWait timer and returns its channel; nil
// (never ready) when d is 0.
func (om *outMsg) queueTimer(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return nil
	}
	if om.qt == nil {
		om.qt = time.NewTimer(d)
	} else {
		om.qt.Reset(d)
	}
	return om.qt.C
}

// stopQueueTimer stops the timer queueTimer armed, if any.
func (om *outMsg) stopQueueTimer() {
	if om.qt != nil {
		om.qt.Stop()
	}
}

// errRetired ends a conn that was replaced (token renewal, age, a stall)
// or shut down after its writer flushed the queue.
var errRetired = errors.New("relay: connection retired")

// conn is one pooled sender WebSocket and the two goroutines that own it:
// readLoop (the only reader; discards what the listener sends and lets
// Ping see pongs) and run, the writer (the only writer of data frames:
// writeLoop drains sendq, coalescing queued messages into one socket
// write, and schedules keepalive pings, each in a short-lived goroutine
// that exists only while a ping is outstanding; then run tears the conn
// down and returns after the reader and any ping have exited).
// A conn is created by its slot (see slot) once per connection attempt;
// gen numbers them per slot, so logs and eviction always name one specific
// connection and never its replacement.
//
// A conn whose listener stops reading stalls: a write blocks, or the bytes
// the relay has not acknowledged stop draining, for WriteTimeout. It then
// takes no new messages, its queued senders retry elsewhere, its
// slot dials a replacement, and it stays open so that what it
// already wrote is delivered when the listener resumes: it closes with
// 1000 once the relay has acknowledged everything, or is closed after
// StallCloseAfter, counting what may be lost.
type conn struct {
	// Static after construction.
	p     *Pool
	sl    *slot
	gen   uint64
	log   *slog.Logger
	sendq chan *outMsg
	// retire is closed (once, by retireWith) to ask the writer to flush
	// the queue and the conn to close with retireCode.
	retire     chan struct{}
	retireOnce sync.Once
	// stalled is closed (once, by stall) when the conn stops taking
	// messages because its peer stopped reading.
	stalled   chan struct{}
	stallOnce sync.Once

	// Set by Pool.dialInto before run is started and before the conn is
	// published; read-only afterwards.
	ws      *websocket.Conn
	tap     *tapConn                // nil when the pool's client cannot be tapped
	ctx     context.Context         // lifetime: cancelled when the conn goes down
	cancel  context.CancelCauseFunc // cancels ctx
	wctx    context.Context         // ctx without cancellation, for ws calls (see writeBatch)
	started time.Time
	wtimer  *time.Timer // write overran WriteTimeout: stall
	ktimer  *time.Timer // stalled write overran StallCloseAfter: close

	// Set before run starts, then guarded by sl.mu.
	expires   time.Time // token expiry (pushed back after a failed renewal); zero when not renewable
	replaceAt time.Time // jittered maximum age (pushed back after a failed replacement); zero: none
	renewing  bool      // renewT fires for the token's expiry, not the maximum age
	over      bool      // run has returned
	// renewT fires when the conn is due for replacement (renewDelayOf);
	// Reset by the slot after a failed replacement.
	renewT *time.Timer

	// Written by retireWith before closing retire; read after.
	retireCode   websocket.StatusCode
	retireReason string

	// Owned by the writer goroutine.
	batch   []*outMsg
	ends    []int   // corked bytes after each batch message
	frames  lossLog // where the frames the relay may not have acknowledged end
	pollT   *time.Timer
	bound   int    // unacknowledged bytes at the last SIOCOUTQ reading
	boundAt uint64 // tap.written at that reading

	// Accessed atomically.
	down     atomic.Bool  // no longer takes messages; Send skips it
	timedOut atomic.Bool  // a stalled write was closed after StallCloseAfter
	pongs    atomic.Int64 // pings answered; a conn with any counts as healthy
	pinging  atomic.Bool  // a ping goroutine is outstanding
	queued   atomic.Int64 // bytes in sendq
	inflight atomic.Int64 // size of the message writeOne is writing

	// loops counts readLoop and an outstanding ping; run, the writer,
	// waits for it after closing ws.
	loops sync.WaitGroup
	// readErr is why readLoop ended; written before loops.Done, read by
	// run after loops.Wait.
	readErr error

	// Guarded by p.mu.
	state ConnState
}

// run is the conn's writer goroutine: it starts the reader, runs
// writeLoop until the conn goes down or is retired, then closes the conn
// and waits for the reader and any ping. It must be called once, in its
// goroutine counted in p.wg (the slot's, see slot.serve). The first loop to fail ends the other,
// as in an errgroup: the reader cancels ctx (which ends writeLoop) and
// closes ws (which ends a blocked write); writeLoop's end closes ws (which
// ends the reader). A retired conn is closed with a handshake rather than
// by a ctx, so that the reader sees the relay's close frame.
func (c *conn) run() {
	// When the pool's Close runs out of time, a write blocked on a
	// stalled socket must not keep it waiting.
	stopAbort := context.AfterFunc(c.p.ctx, func() { _ = c.ws.CloseNow() })
	c.loops.Add(1)
	go c.readLoop()
	err := c.writeLoop()
	stopAbort()
	if c.timedOut.Load() && !errors.Is(err, errRetired) {
		// The reader may have noticed the closed socket first.
		err = fmt.Errorf("stalled write closed after %v: %w", c.p.cfg.StallCloseAfter, err)
	}
	// Stop taking messages first, so senders waiting on this conn retry
	// elsewhere right away, then stop any ping.
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
	c.loops.Wait()
	c.wtimer.Stop()
	c.ktimer.Stop()
	c.closed(err, retired)
}

// closed logs and counts how the conn ended (err is why its writer
// stopped) and takes it out of the pool's accounting.
func (c *conn) closed(err error, retired bool) {
	// Either loop may have seen the relay's close frame first.
	code := websocket.CloseStatus(c.readErr)
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

// stall takes the conn out of rotation because its peer stopped reading:
// senders of queued messages retry elsewhere and the slot dials a
// replacement. Safe to call more than once and from any goroutine.
func (c *conn) stall(why string) {
	c.stallOnce.Do(func() {
		c.p.markStalled(c)
		close(c.stalled)
		c.log.Warn("relay connection stalled: the listener is not reading; kept open to drain",
			"why", why, "close_after", c.p.cfg.StallCloseAfter)
		c.sl.stalled(c)
	})
}

// isStalled reports whether stall was called.
func (c *conn) isStalled() bool {
	select {
	case <-c.stalled:
		return true
	default:
		return false
	}
}

// readLoop is the conn's only reader, counted in loops. Pooled sender
// connections carry messages one way, so whatever the listener sends is
// counted and discarded; reading is still required for Ping to see pongs
// and for the close handshake. It reads with wctx (no cancellation):
// closing ws is what ends it. When reading fails before the writer has
// begun the teardown, it tears the conn down in the same order as run:
// out of rotation, ctx cancelled (ending writeLoop), ws closed (ending a
// blocked write).
func (c *conn) readLoop() {
	defer c.loops.Done()
	err := c.discard()
	c.readErr = err
	if c.ctx.Err() == nil {
		c.p.markDown(c)
		c.cancel(err)
		_ = c.ws.CloseNow()
	}
}

// discard reads and drops messages until reading fails.
func (c *conn) discard() error {
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
// goes down, or, once retired or stalled, until what it holds is written
// and acknowledged. Every PingInterval (plus jitter) it starts a ping
// unless one is outstanding or unacknowledged bytes would delay it. It
// also hands the slot the conn's events that no other goroutine waits
// for: the conn is due for replacement (renewT), the pool is closing.
func (c *conn) writeLoop() error {
	pingT := time.NewTimer(c.p.pingDelay())
	defer pingT.Stop()
	stopping := c.p.stopping
	for {
		select {
		case <-c.ctx.Done():
			return context.Cause(c.ctx)
		case <-stopping:
			stopping = nil
			c.p.retireConn(c, websocket.StatusNormalClosure, "gateway shutting down")
		case <-c.renewT.C:
			c.sl.renewDue(c)
		case <-pingT.C:
			pingT.Reset(c.p.pingDelay())
			if n, _ := c.unsent(); n == 0 {
				c.shed()
				if c.pinging.CompareAndSwap(false, true) {
					c.loops.Add(1)
					go c.ping()
				}
			}
		case om := <-c.sendq:
			if c.isStalled() {
				c.dequeued(om)
				c.bounce(om)
				continue
			}
			if err := c.writeFrom(om); err != nil {
				return err
			}
		case <-c.stalled:
			return c.drainStalled()
		case <-c.retire:
			for {
				select {
				case om := <-c.sendq:
					if err := c.writeFrom(om); err != nil {
						return err
					}
				default:
					return errRetired
				}
			}
		}
	}
}

// idleBatch is the batch capacity a conn keeps while idle.
const idleBatch = 16

// shed releases what the writer grew under load, once the relay has
// acknowledged every written byte: the loss log, a large cork buffer, long
// batch slices. An idle conn then holds none of them.
func (c *conn) shed() {
	if c.tap != nil {
		c.frames.acked(c.tap.written.Load())
		c.tap.shrink(minCorkBuf)
	}
	if cap(c.batch) > idleBatch {
		c.batch, c.ends = nil, nil
	}
}

// unsent is the tap's count of unacknowledged bytes (0, false without one).
func (c *conn) unsent() (int, bool) {
	if c.tap == nil {
		return 0, false
	}
	return c.tap.unsent()
}

// dequeued accounts for om leaving sendq.
func (c *conn) dequeued(om *outMsg) { c.queued.Add(-int64(len(om.data))) }

// writeFrom writes om and, coalesced with it, what else is queued.
func (c *conn) writeFrom(om *outMsg) error {
	c.dequeued(om)
	for om != nil {
		if err := c.awaitRoom(len(om.data)); err != nil {
			return err // om is still queued: its sender retries elsewhere
		}
		var err error
		if om, err = c.writeBatch(om); err != nil {
			return err
		}
	}
	return nil
}

// awaitRoom waits until the socket holds few enough unacknowledged bytes
// for size more: at most MaxUnsentBytes, or none at all. Bytes that stop
// draining for WriteTimeout stall the conn; a stalled conn that still does
// not drain is closed after StallCloseAfter.
func (c *conn) awaitRoom(size int) error {
	if c.tap == nil || c.tap.outq == nil {
		return nil
	}
	// What the socket held at the last reading plus what was written
	// since bounds what it holds now: read SIOCOUTQ (a syscall) only when
	// that bound does not fit.
	if ub := c.bound + int(c.tap.written.Load()-c.boundAt); c.fits(ub, size) {
		return nil
	}
	n, ok := c.measure()
	if !ok || c.fits(n, size) {
		return nil
	}
	last, progress := n, time.Now()
	var stalledAt time.Time
	d := 100 * time.Microsecond // the relay usually reads within a round trip
	for {
		if c.pollT == nil {
			c.pollT = time.NewTimer(d)
		} else {
			c.pollT.Reset(d)
		}
		select {
		case <-c.ctx.Done():
			c.pollT.Stop()
			if c.p.ctx.Err() != nil && c.isStalled() {
				if n, _ = c.unsent(); n > 0 {
					_ = c.forceClose(n, 0) // the pool's Close ran out of time
				}
			}
			return context.Cause(c.ctx)
		case <-c.pollT.C:
		}
		d = min(2*d, 50*time.Millisecond)
		if n, _ = c.measure(); c.fits(n, size) {
			return nil
		}
		now := time.Now()
		switch {
		case n < last:
			last, progress = n, now
		case stalledAt.IsZero() && now.Sub(progress) >= c.p.cfg.WriteTimeout:
			c.stall(fmt.Sprintf("%d bytes unacknowledged for %v", n, c.p.cfg.WriteTimeout))
			stalledAt = now
		case !stalledAt.IsZero() && now.Sub(stalledAt) >= c.p.cfg.StallCloseAfter:
			return c.forceClose(n, 0)
		}
	}
}

// measure reads the unacknowledged bytes and remembers them as the bound;
// the frames they no longer include are forgotten.
func (c *conn) measure() (int, bool) {
	at := c.tap.written.Load()
	n, ok := c.tap.unsent()
	if ok {
		c.bound, c.boundAt = n, at
		c.frames.acked(at - uint64(n))
	}
	return n, ok
}

func (c *conn) fits(unsent, size int) bool {
	return unsent == 0 || int64(unsent+size) <= c.p.cfg.MaxUnsentBytes
}

// drainStalled runs once the conn has stalled: it lets the senders of
// queued messages go (they retry elsewhere), waits until the relay has
// acknowledged every written byte and retires the conn, or closes it
// after StallCloseAfter.
func (c *conn) drainStalled() error {
	for {
		select {
		case om := <-c.sendq:
			c.dequeued(om)
			c.bounce(om)
			continue
		default:
		}
		break
	}
	if err := c.awaitRoom(1 << 62); err != nil && !errors.Is(err, errRetired) {
		return err
	}
	c.retireWith(websocket.StatusNormalClosure, "stalled connection drained")
	return errRetired
}

// bounce hands om back to its sender unwritten, to be retried elsewhere.
func (c *conn) bounce(om *outMsg) {
	if om.state.CompareAndSwap(msgQueued, msgTaken) {
		om.done <- ErrConnLost
		return
	}
	c.p.putMsg(om) // abandoned by its sender; we hold the last reference
}

// forceClose gives up on a stalled conn whose relay still holds n
// unacknowledged bytes, plus partial bytes of a frame being written, and
// counts the frames that may be lost.
func (c *conn) forceClose(n int, partial int) error {
	frames := partial
	if c.tap != nil {
		frames += c.frames.unacked(c.tap.written.Load() - uint64(n))
	}
	c.p.lost(c, frames, n)
	c.timedOut.Store(true)
	return fmt.Errorf("stalled for %v with %d bytes unacknowledged", c.p.cfg.StallCloseAfter, n)
}

// take claims om for writing; false when its sender abandoned it (then om
// is recycled here).
func (c *conn) take(om *outMsg) bool {
	if om.state.CompareAndSwap(msgQueued, msgTaken) {
		return true
	}
	c.p.putMsg(om)
	return false
}

// writeBatch writes om and, while more messages are queued and the batch
// stays under maxCorkBytes, those too, corked into one socket write. It
// returns a dequeued message that did not fit, to be written next.
//
// The write timeout is a per-conn timer rather than a per-write
// context.WithTimeout(c.ctx, …): coder/websocket arms a context.AfterFunc for
// every write whose ctx can be cancelled, and together with the timer
// context that is several allocations per message. ws.Write therefore gets
// wctx, which is derived from the conn's lifetime ctx but has no Done
// channel; wtimer stalls the conn if the write overruns and ktimer closes
// it after StallCloseAfter. Lifetime cancellation reaches a blocked write
// the same way: run closes ws.
func (c *conn) writeBatch(om *outMsg) (carry *outMsg, err error) {
	if !c.take(om) {
		return nil, nil
	}
	if c.tap != nil && len(c.sendq) == 0 && len(om.data) < maxCorkBytes {
		// Let senders that are runnable enqueue first: under load their
		// messages then share this write. Returns at once when idle.
		runtime.Gosched()
	}
	cork := c.tap != nil && len(c.sendq) > 0 && len(om.data) < maxCorkBytes
	if !cork {
		return nil, c.writeOne(om)
	}
	c.batch, c.ends = append(c.batch[:0], om), c.ends[:0]
	base := c.tap.written.Load()
	c.tap.Cork()
	size := 0
	for {
		if err := c.ws.Write(c.wctx, om.typ, om.data); err != nil {
			// The conn is closed: nothing of om left the cork (a
			// truncated frame followed by the end of the stream is
			// never delivered), so it may be retried; the batch before
			// it is judged by the flush.
			c.batch = c.batch[:len(c.batch)-1]
			n, ferr := c.tap.flush()
			c.finishBatch(base, n, ferr)
			c.answer(om, ErrConnLost)
			return nil, fmt.Errorf("write: %w", err)
		}
		size = c.tap.pending()
		c.ends = append(c.ends, size)
		if size >= maxCorkBytes || len(c.sendq) == 0 {
			break
		}
		om = <-c.sendq
		c.dequeued(om)
		if int64(size+len(om.data)) > maxCorkBytes {
			carry = om
			break
		}
		if !c.take(om) {
			continue
		}
		c.batch = append(c.batch, om)
	}
	c.armWrite()
	n, ferr := c.tap.flush()
	c.disarmWrite()
	c.finishBatch(base, n, ferr)
	if ferr != nil {
		if carry != nil {
			c.bounce(carry)
		}
		return nil, fmt.Errorf("write: %w", ferr)
	}
	return carry, nil
}

// finishBatch answers every message of the batch by how much of the
// corked bytes reached the socket: n bytes, or all on success.
func (c *conn) finishBatch(base uint64, n int, err error) {
	start := 0
	for i, om := range c.batch {
		end := c.ends[i]
		switch {
		case err == nil || end <= n:
			c.recordFrame(base + uint64(end))
			c.answer(om, nil)
		case start < n:
			c.answer(om, ErrPartialWrite)
		default:
			c.answer(om, ErrConnLost)
		}
		start = end
		c.batch[i] = nil
	}
	c.batch = c.batch[:0]
}

// writeOne writes om alone, straight through to the socket.
func (c *conn) writeOne(om *outMsg) error {
	var before uint64
	if c.tap != nil {
		before = c.tap.written.Load()
	}
	c.inflight.Store(int64(len(om.data)))
	c.armWrite()
	err := c.ws.Write(c.wctx, om.typ, om.data)
	c.disarmWrite()
	if err != nil {
		// Only bytes that never reached the socket may be retried.
		if c.tap != nil && c.tap.written.Load() == before {
			c.answer(om, ErrConnLost)
		} else {
			c.answer(om, ErrPartialWrite)
		}
		return fmt.Errorf("write: %w", err)
	}
	if c.tap != nil {
		c.recordFrame(c.tap.written.Load())
	}
	c.answer(om, nil)
	return nil
}

// answer reports om's result to its sender.
func (c *conn) answer(om *outMsg, err error) {
	if err == nil {
		c.p.m.MessageSent(len(om.data))
		if c.log.Enabled(c.wctx, slog.LevelDebug) {
			c.log.LogAttrs(c.wctx, slog.LevelDebug, "sent", slog.String("id", om.id), slog.Int("bytes", len(om.data)))
		}
	}
	om.done <- err
}

// recordFrame remembers the tap offset at which a written frame ends, if
// the unacknowledged bytes can be read (forceClose needs them).
func (c *conn) recordFrame(end uint64) {
	if c.tap.outq != nil {
		c.frames.record(end)
	}
}

func (c *conn) armWrite() {
	c.wtimer.Reset(c.p.cfg.WriteTimeout)
	c.ktimer.Reset(c.p.cfg.WriteTimeout + c.p.cfg.StallCloseAfter)
}

func (c *conn) disarmWrite() {
	c.wtimer.Stop()
	c.ktimer.Stop()
}

// writeExpired is wtimer's function: a write overran WriteTimeout.
func (c *conn) writeExpired() { c.stall(fmt.Sprintf("a write blocked for %v", c.p.cfg.WriteTimeout)) }

// writeKilled is ktimer's function: a stalled write did not finish within
// StallCloseAfter. The frame being written may be lost, and so may what
// the relay has not acknowledged.
func (c *conn) writeKilled() {
	n := 0
	if c.tap != nil && c.tap.outq != nil {
		n, _ = c.tap.outq.read()
	}
	c.p.lost(c, 1, max(n, int(c.inflight.Load())))
	c.timedOut.Store(true)
	_ = c.ws.CloseNow()
}

// ping sends one ping (only when nothing is unacknowledged, so its write
// cannot block). A pong that does not come back within WriteTimeout stalls
// the conn (the relay stopped reading it, usually because its listener
// did) rather than failing it, so nothing already written is thrown away:
// the stalled conn then closes with a handshake, or is closed when that
// times out. Like writeBatch, it
// keeps the lifetime ctx's cancellation away from ws: a retiring conn must
// finish its close handshake, not be cut mid-frame.
func (c *conn) ping() {
	defer c.loops.Done()
	defer c.pinging.Store(false)
	pctx, cancel := context.WithTimeout(c.wctx, c.p.cfg.WriteTimeout)
	err := c.ws.Ping(pctx)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.stall(fmt.Sprintf("no pong within %v", c.p.cfg.WriteTimeout))
		}
		return
	}
	c.pongs.Add(1)
}

// wait waits for the result of om, which the caller put in c's queue. It
// returns ErrConnLost if c went down or stalled before writing om, so the
// caller can retry elsewhere, and reports whether the caller owns om again
// (false when om was abandoned in the queue; the writer or the garbage
// collector then disposes of it).
func (c *conn) wait(ctx context.Context, om *outMsg) (err error, owned bool) {
	// One timer serves MaxQueueWait and the message's deadline, whichever
	// comes first.
	d, timeout := c.p.cfg.MaxQueueWait, errQueueWait
	if !om.deadline.IsZero() {
		if left := time.Until(om.deadline); d <= 0 || left < d {
			d, timeout = max(left, 1), context.DeadlineExceeded
		}
	}
	expired := om.queueTimer(d)
	var withdrawn error // what Send learns if om is withdrawn unwritten
	select {
	case err = <-om.done:
		om.stopQueueTimer()
		return err, true
	case <-ctx.Done():
		withdrawn = ctx.Err()
	case <-c.ctx.Done():
		withdrawn = ErrConnLost
	case <-c.stalled:
		withdrawn = ErrConnLost
	case <-expired:
		withdrawn = timeout
	}
	// Stop the timer while om is still ours: once withdrawn, the writer
	// may recycle it for another Send.
	om.stopQueueTimer()
	if om.state.CompareAndSwap(msgQueued, msgAbandoned) {
		return withdrawn, false
	}
	// The writer took om and answers once the write ends (StallCloseAfter
	// at the latest); waiting for it keeps the promise that the pool does
	// not hold Data after Send.
	return <-om.done, true
}

// lossLog remembers where written frames end in the tap's byte stream
// until the relay has acknowledged them, so that closing a stalled conn
// can count the frames it may lose. It is a ring grown on demand (up to
// lossRing entries) and released once every frame is acknowledged, so an
// idle conn holds none. The count is exact while at most lossRing frames
// are unacknowledged; beyond that, the oldest ends are forgotten and
// counted as lost when the oldest remembered frame is unacknowledged: an
// upper bound.
type lossLog struct {
	ring    []uint64 // len is a power of two; ring[(head+i)%len] is the i-th oldest end
	head, n int
	// forgot counts frames dropped from a full ring that were not known
	// to be acknowledged.
	forgot uint64
}

// record remembers a frame ending at end (offsets only grow).
func (l *lossLog) record(end uint64) {
	if l.n == len(l.ring) {
		if len(l.ring) == lossRing {
			l.head = (l.head + 1) % len(l.ring)
			l.n--
			l.forgot++
		} else {
			l.grow()
		}
	}
	l.ring[(l.head+l.n)%len(l.ring)] = end
	l.n++
}

func (l *lossLog) grow() {
	ring := make([]uint64, max(8, 2*len(l.ring)))
	for i := range l.n {
		ring[i] = l.ring[(l.head+i)%len(l.ring)]
	}
	l.ring, l.head = ring, 0
}

// acked forgets the frames that end at or before offset, which the relay
// has acknowledged, and releases the ring when none is left.
func (l *lossLog) acked(offset uint64) {
	for l.n > 0 && l.ring[l.head] <= offset {
		l.head = (l.head + 1) % len(l.ring)
		l.n--
		l.forgot = 0 // older than an acknowledged frame: acknowledged too
	}
	if l.n == 0 {
		*l = lossLog{}
	}
}

// unacked counts the frames that end after offset, the relay's
// acknowledged position (see lossLog for when it is an upper bound).
func (l *lossLog) unacked(offset uint64) int {
	k := 0
	for i := l.n; i > 0 && l.ring[(l.head+i-1)%len(l.ring)] > offset; i-- {
		k++
	}
	if k == l.n {
		k += int(l.forgot)
	}
	return k
}
