package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/relay"
)

// poolRecv is one message a poolListener received.
type poolRecv struct {
	conn string // the relayed connection's id
	typ  relay.MessageType
	data []byte
}

// poolListener is a relay.Listener on the emulator recording every message
// of every accepted connection, and each connection's close code.
type poolListener struct {
	l      *relay.Listener
	got    chan poolRecv
	closes chan int
	conns  atomic.Int64
	stop   func()
}

// startPoolListener runs a listener on entity and waits until it is
// connected. With a non-nil gate, accepted connections are not read until
// gate is closed (a stalled receiver).
func startPoolListener(tb testing.TB, emu *emulator.Server, entity string, gate <-chan struct{}) *poolListener {
	tb.Helper()
	pl := &poolListener{got: make(chan poolRecv, 20000), closes: make(chan int, 1000)}
	// Without keep-alives, a rendezvous dial cancelled by stop cannot
	// leave an unused connection that holds up the emulator's Close.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials(entity),
		HTTPClient:  &http.Client{Transport: tr},
		Backoff:     []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond},
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			pl.conns.Add(1)
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return
				}
			}
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					pl.closes <- int(websocket.CloseStatus(err))
					return
				}
				pl.got <- poolRecv{conn: c.ID(), typ: typ, data: data}
			}
		},
	}, testLogger(tb, "listener"))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx) }()
	var once sync.Once
	pl.l = l
	pl.stop = func() {
		once.Do(func() {
			l.Close()
			cancel()
			select {
			case err := <-runErr:
				if err != nil {
					tb.Errorf("listener Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				tb.Errorf("listener Run did not return after Close")
			}
		})
	}
	tb.Cleanup(pl.stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := l.WaitConnected(wctx); err != nil {
		tb.Fatalf("listener did not connect: %v", err)
	}
	return pl
}

// waitMessage receives from pl until a message with data arrives.
func (pl *poolListener) waitMessage(tb testing.TB, data []byte) {
	tb.Helper()
	t := time.NewTimer(waitLimit)
	defer t.Stop()
	for {
		select {
		case r := <-pl.got:
			if bytes.Equal(r.data, data) {
				return
			}
		case <-t.C:
			tb.Fatalf("listener did not receive %q", data)
		}
	}
}

// collect receives n messages from pl or fails after waitLimit.
func (pl *poolListener) collect(tb testing.TB, n int) []poolRecv {
	tb.Helper()
	out := make([]poolRecv, 0, n)
	t := time.NewTimer(waitLimit)
	defer t.Stop()
	for len(out) < n {
		select {
		case r := <-pl.got:
			out = append(out, r)
		case <-t.C:
			tb.Fatalf("listener received %d messages, want %d", len(out), n)
		}
	}
	return out
}

// poolMetrics records a Pool's metrics.
type poolMetrics struct {
	mu       sync.Mutex
	gauge    map[relay.ConnState]int
	dials    map[string]int
	closes   map[int]int
	rejected map[string]int
	sent     atomic.Int64
	bytes    atomic.Int64
	stalls   atomic.Int64 // connections that went ready → stalled
}

func newPoolMetrics() *poolMetrics {
	return &poolMetrics{gauge: map[relay.ConnState]int{}, dials: map[string]int{}, closes: map[int]int{}, rejected: map[string]int{}}
}

func (m *poolMetrics) ConnStateChanged(from, to relay.ConnState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if from != relay.StateNone {
		m.gauge[from]--
	}
	if to != relay.StateNone {
		m.gauge[to]++
	}
	if to == relay.StateStalled {
		m.stalls.Add(1)
	}
}

func (m *poolMetrics) Dialed(result string) { m.mu.Lock(); m.dials[result]++; m.mu.Unlock() }

func (m *poolMetrics) ConnClosed(code int) { m.mu.Lock(); m.closes[code]++; m.mu.Unlock() }

func (m *poolMetrics) MessageSent(n int) { m.sent.Add(1); m.bytes.Add(int64(n)) }

func (m *poolMetrics) Rejected(r string) { m.mu.Lock(); m.rejected[r]++; m.mu.Unlock() }

func (m *poolMetrics) get(f func(m *poolMetrics) int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return f(m)
}

// newTestPool returns a pool with test-sized timeouts, closed at cleanup.
func newTestPool(tb testing.TB, creds relay.Credentials, mod func(*relay.PoolConfig), m relay.Metrics) *relay.Pool {
	tb.Helper()
	return newTestPoolLog(tb, creds, mod, m, testLogger(tb, "pool"))
}

func newTestPoolLog(tb testing.TB, creds relay.Credentials, mod func(*relay.PoolConfig), m relay.Metrics, log *slog.Logger) *relay.Pool {
	tb.Helper()
	cfg := relay.PoolConfig{
		Credentials: creds,
		Size:        2,
		// Generous: a loaded machine under -race must not time out a
		// healthy write, dial or pong. Tests of those timeouts set their own.
		WriteTimeout: 30 * time.Second,
		DialTimeout:  30 * time.Second,
		PingInterval: 5 * time.Second,
		Backoff:      []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := relay.NewPool(cfg, log, m)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			tb.Errorf("pool close: %v", err)
		}
	})
	return p
}

// waitAllReady waits until every connection of p is ready.
func waitAllReady(tb testing.TB, p *relay.Pool) {
	tb.Helper()
	waitFor(tb, "every pooled connection ready", func() bool {
		s := p.Stats()
		return s.Ready == s.Size
	})
}

func seqMessage(i, extra int) relay.Message {
	typ := relay.MessageText
	data := fmt.Appendf(nil, "%06d:", i)
	if i%2 == 1 {
		typ = relay.MessageBinary
		for range extra {
			data = append(data, byte(rand.IntN(256)))
		}
	} else {
		for j := range extra {
			data = append(data, 'a'+byte(j%26))
		}
	}
	return relay.Message{ID: fmt.Sprint(i), Type: typ, Data: data}
}

// failFastCtx bounds a Send that must fail (or succeed) without waiting
// for a connection: had it waited, it would return only at this generous
// deadline, with DeadlineExceeded, which the caller's errors.Is check
// rejects. No elapsed-time assertion, so CPU load cannot fail it.
func failFastCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// sendUntilOK sends until a Send succeeds; every failure must be a fast
// ErrUnavailable (or ErrOverloaded while connections come back).
func sendUntilOK(tb testing.TB, p *relay.Pool, m relay.Message) {
	tb.Helper()
	waitFor(tb, "a successful send", func() bool {
		err := p.Send(failFastCtx(tb), m)
		if err != nil && !errors.Is(err, relay.ErrUnavailable) && !errors.Is(err, relay.ErrOverloaded) {
			tb.Fatalf("Send: %v", err)
		}
		return err == nil
	})
}
