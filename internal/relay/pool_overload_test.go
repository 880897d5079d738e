package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

func TestPoolOverloadedAndCancelledSends(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	gate := make(chan struct{})
	pl := startPoolListener(t, emu, "hc1", gate)
	m := newPoolMetrics()
	const queueSize = 2
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) {
		c.Size, c.QueueSize = 1, queueSize
		c.MaxQueuedBytes = 64 << 20 // queue by count here
		// The stalled listener must not get the connection evicted.
		c.WriteTimeout, c.PingInterval = 30*time.Second, time.Minute
	}, m)
	waitAllReady(t, p)
	big := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 1<<20)}

	// The listener does not read, so the relay's buffers fill up, the
	// pool's writer blocks in a write and its queue fills. Keep starting
	// Sends (cancelled below) until one is refused as overloaded. Each
	// outstanding Send is queued or in the writer (at most one), so once
	// outstanding ≤ Queued+1 the last one is accounted for. No timing:
	// only events and pool state decide.
	qctx, qcancel := context.WithCancel(t.Context())
	defer qcancel()
	results := make(chan error, 1024)
	launched, returned, ok := 0, 0, 0
	for overloaded := false; !overloaded; {
		if launched == cap(results) {
			t.Fatalf("the queue never filled after %d Sends", launched)
		}
		launched++
		go func() { results <- p.Send(qctx, big) }()
		waitFor(t, "the Send to be queued, written or refused", func() bool {
			return len(results) > 0 || launched-returned <= p.Stats().Queued+1
		})
		for len(results) > 0 {
			returned++
			switch err := <-results; {
			case err == nil:
				ok++
			case errors.Is(err, relay.ErrOverloaded):
				overloaded = true
			default:
				t.Fatalf("Send while filling the queue: %v", err)
			}
		}
	}

	// Cancelling the queued requests returns them at once (a Send whose
	// write has begun waits for it) and leaves the connection alone.
	qcancel()
	waitFor(t, "the cancelled queued Sends to return", func() bool { return launched-returned-len(results) <= 1 })
	cancelled := 0
	collectResults := func() {
		for len(results) > 0 {
			returned++
			switch err := <-results; {
			case err == nil:
				ok++ // written before the cancel
			case errors.Is(err, context.Canceled):
				cancelled++
			default:
				t.Errorf("cancelled queued Send: got %v, want context.Canceled", err)
			}
		}
	}
	okBefore := ok
	collectResults()
	switch {
	case cancelled > 0:
	case ok > okBefore:
		// The relay's buffers had room left when the queue filled, so
		// the writer took the queued Sends before the cancel (seen on
		// a loaded machine): nothing was queued to cancel. Had
		// cancelling not worked, they would still be waiting.
		t.Log("the writer was not yet blocked at the cancel; the queued Sends were written")
	default:
		t.Error("no queued Send returned context.Canceled")
	}

	// The listener resumes: the stuck write completes, the abandoned
	// messages are skipped, and the one connection carries on.
	close(gate)
	waitFor(t, "the Send whose write was stuck to return", func() bool { return launched-returned-len(results) == 0 })
	collectResults()
	after := relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("after")}
	sendUntilOK(t, p, after) // abandoned messages hold their slots until the writer skips them
	got := pl.collect(t, ok+1)
	if last := got[len(got)-1]; !bytes.Equal(last.data, after.Data) {
		t.Errorf("message %d is %d bytes, want %q: an abandoned message was written", len(got), len(last.data), after.Data)
	}
	if s := p.Stats(); s.Dials != 1 || pl.conns.Load() != 1 {
		t.Errorf("dials %d, listener connections %d; want the one connection to survive", s.Dials, pl.conns.Load())
	}
	for _, reason := range []string{"queue_full", "canceled"} {
		if got := m.get(func(m *poolMetrics) int { return m.rejected[reason] }); got == 0 {
			t.Errorf("no rejection counted as %s (%v)", reason, m.rejected)
		}
	}
}

func TestPoolCancelledContextKeepsConnection(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 1 }, nil)
	waitAllReady(t, p)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Send(ctx, seqMessage(0, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled ctx: got %v, want context.Canceled", err)
	}
	for i := range 50 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := p.Send(ctx, seqMessage(i, 10))
		cancel() // ends the request right after the write
		if err != nil {
			t.Fatal(err)
		}
	}
	pl.collect(t, 50)
	if s := p.Stats(); s.Dials != 1 || pl.conns.Load() != 1 {
		t.Errorf("dials %d, listener connections %d; want 1 and 1", s.Dials, pl.conns.Load())
	}
}

func TestPoolCloseUnderLoad(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	m := newPoolMetrics()
	p, err := relay.NewPool(relay.PoolConfig{
		Credentials: emu.Credentials("hc1"),
		Backoff:     []time.Duration{10 * time.Millisecond},
	}, testLogger(t, "pool"), m)
	if err != nil {
		t.Fatal(err)
	}
	waitAllReady(t, p)

	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := 0; ; j++ {
				err := p.Send(context.Background(), seqMessage(i*1000000+j, 50))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, relay.ErrClosed):
					return
				case errors.Is(err, relay.ErrOverloaded):
				default:
					t.Errorf("Send during Close: %v", err)
					return
				}
			}
		})
	}
	waitFor(t, "traffic", func() bool { return ok.Load() > 200 })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("senders stuck after Close")
	}
	if err := p.Send(t.Context(), seqMessage(0, 1)); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("Send after Close: got %v, want ErrClosed", err)
	}
	if err := p.WaitReady(t.Context()); !errors.Is(err, relay.ErrClosed) {
		t.Errorf("WaitReady after Close: got %v, want ErrClosed", err)
	}
	if ok, reason := p.Ready(); ok || reason != "draining" {
		t.Errorf("Ready after Close = %v, %q; want false, draining", ok, reason)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Every message reported sent was flushed before the close handshake.
	pl.collect(t, int(ok.Load()))
	for range 4 {
		select {
		case code := <-pl.closes:
			if code != int(websocket.StatusNormalClosure) {
				t.Errorf("listener saw close code %d, want 1000", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("listener did not see every connection close")
		}
	}
	s := p.Stats()
	if s.Ready+s.Connecting+s.Backoff+s.Retiring != 0 {
		t.Errorf("stats after Close: %+v", s)
	}
	m.mu.Lock()
	for st, n := range m.gauge {
		if n != 0 {
			t.Errorf("metrics gauge %v = %d after Close, want 0", st, n)
		}
	}
	m.mu.Unlock()
}

// TestPoolMaxQueueWait: behind a write that does not finish (the listener
// does not read), queued messages are withdrawn after MaxQueueWait with
// ErrOverloaded and never written; the listener, once it reads, gets
// exactly the messages whose Send returned nil.
func TestPoolMaxQueueWait(t *testing.T) {
	t.Parallel()
	testWithdrawnUnwritten(t, 200*time.Millisecond, 0, relay.ErrOverloaded, "queue_wait")
}

// TestPoolMessageDeadline: the same with Message.Deadline, which comes
// before MaxQueueWait here: context.DeadlineExceeded, counted as
// "deadline".
func TestPoolMessageDeadline(t *testing.T) {
	t.Parallel()
	testWithdrawnUnwritten(t, time.Hour, 200*time.Millisecond, context.DeadlineExceeded, "deadline")
}

// testWithdrawnUnwritten sends until a message is withdrawn from the
// queue of a connection whose listener does not read, with MaxQueueWait
// maxWait and each message's Deadline deadline from its Send (0: none),
// and checks the withdrawn ones failed with want (counted as reason) and
// were never written.
func testWithdrawnUnwritten(t *testing.T, maxWait, deadline time.Duration, want error, reason string) {
	emu := emulatortest.Start(t)
	gate := make(chan struct{})
	pl := startPoolListener(t, emu, "hc1", gate)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) {
		c.Size, c.QueueSize, c.MaxQueuedBytes = 1, 1024, 1<<30
		c.MaxQueueWait = maxWait
		// The stalled listener must not get the connection evicted.
		c.WriteTimeout, c.PingInterval = 30*time.Second, time.Minute
	}, m)
	waitAllReady(t, p)

	// 1 MiB messages from concurrent senders, in groups of 8, until one
	// is withdrawn: by then the relay's buffers are full and the writer
	// is blocked in a write.
	type result struct {
		id  int
		err error
	}
	results := make(chan result, 256)
	launched, returned, withdrawn := 0, 0, 0
	sent := map[int]bool{}
	collect := func(r result) {
		returned++
		switch {
		case r.err == nil:
			sent[r.id] = true
		case errors.Is(r.err, want):
			withdrawn++
		default:
			t.Fatalf("Send %d: %v", r.id, r.err)
		}
	}
	for withdrawn == 0 {
		if launched == cap(results) {
			t.Fatalf("no message was withdrawn after %d Sends", launched)
		}
		for range 8 {
			id := launched
			launched++
			go func() {
				m := seqMessage(2*id+1, 1<<20)
				if deadline > 0 {
					m.Deadline = time.Now().Add(deadline)
				}
				results <- result{id, p.Send(t.Context(), m)}
			}()
		}
		waitFor(t, "a Send to return", func() bool { return len(results) > 0 })
		for len(results) > 0 {
			collect(<-results)
		}
	}
	// The rest return too: withdrawn after MaxQueueWait, or written
	// once the listener reads.
	close(gate)
	for returned < launched {
		collect(<-results)
	}
	for _, r := range pl.collect(t, len(sent)) {
		var n int
		fmt.Sscanf(string(r.data[:6]), "%06d", &n)
		if !sent[(n-1)/2] {
			t.Errorf("message %d was delivered, but its Send did not return nil", (n-1)/2)
		}
	}
	// Nothing else arrives (one connection keeps the order): every other
	// message was withdrawn unwritten.
	after := relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("after")}
	sendUntilOK(t, p, after)
	if got := pl.collect(t, 1); !bytes.Equal(got[0].data, after.Data) {
		t.Errorf("after %d sent messages the listener got a %d-byte message, want %q: a withdrawn message was written", len(sent), len(got[0].data), after.Data)
	}
	if n := m.get(func(m *poolMetrics) int { return m.rejected[reason] }); n != withdrawn {
		t.Errorf("%d rejections counted as %s, want %d (%v)", n, reason, withdrawn, m.rejected)
	}
	t.Logf("%d Sends: %d sent, %d withdrawn (%v)", launched, len(sent), withdrawn, want)
}

// TestPoolMessageDeadlineBeforeSend: a deadline that has passed fails the
// Send at once; with no connection ready, a deadline ends the wait for
// one (long before RetryWait) with ErrUnavailable, as a context deadline
// would.
func TestPoolMessageDeadlineBeforeSend(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.RetryWait = time.Hour }, m)
	// Had Send waited for RetryWait, this cancel would end it with
	// context.Canceled, which the checks below reject.
	ctx, cancel := context.WithCancel(t.Context())
	defer time.AfterFunc(30*time.Second, cancel).Stop()

	msg := seqMessage(1, 10)
	msg.Deadline = time.Now().Add(-time.Millisecond)
	if err := p.Send(ctx, msg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send past its deadline: %v, want context.DeadlineExceeded", err)
	}
	msg.Deadline = time.Now().Add(100 * time.Millisecond)
	if err := p.Send(ctx, msg); !errors.Is(err, relay.ErrUnavailable) || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("Send with no listener: %v, want ErrUnavailable (no listener)", err)
	}
	if got := m.get(func(m *poolMetrics) int { return m.rejected["deadline"] + m.rejected["unavailable"]*100 }); got != 101 {
		t.Errorf("rejections %v, want one deadline and one unavailable", m.rejected)
	}
}
