package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// poolWaitFor polls cond until it holds or timeout passes.
func poolWaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// poolLogger logs to the test's output until the test ends.
func poolLogger(tb testing.TB, component string) *slog.Logger {
	l, _ := poolLoggerW(tb, component, slog.LevelInfo)
	return l
}

// poolLoggerW is poolLogger at level, also returning the buffer, which
// keeps everything logged.
func poolLoggerW(tb testing.TB, component string, level slog.Level) (*slog.Logger, *testlog.Buffer) {
	w := testlog.Tee(tb)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("component", component), w
}

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
	}, poolLogger(tb, "listener"))
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
func (pl *poolListener) waitMessage(tb testing.TB, data []byte, timeout time.Duration) {
	tb.Helper()
	t := time.NewTimer(timeout)
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

// collect receives n messages from pl or fails after timeout.
func (pl *poolListener) collect(tb testing.TB, n int, timeout time.Duration) []poolRecv {
	tb.Helper()
	out := make([]poolRecv, 0, n)
	t := time.NewTimer(timeout)
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
func (m *poolMetrics) ConnClosed(code int)  { m.mu.Lock(); m.closes[code]++; m.mu.Unlock() }
func (m *poolMetrics) MessageSent(n int)    { m.sent.Add(1); m.bytes.Add(int64(n)) }
func (m *poolMetrics) Rejected(r string)    { m.mu.Lock(); m.rejected[r]++; m.mu.Unlock() }

func (m *poolMetrics) get(f func(m *poolMetrics) int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return f(m)
}

// newTestPool returns a pool with test-sized timeouts, closed at cleanup.
func newTestPool(tb testing.TB, creds relay.Credentials, mod func(*relay.PoolConfig), m relay.Metrics) *relay.Pool {
	tb.Helper()
	return newTestPoolLog(tb, creds, mod, m, poolLogger(tb, "pool"))
}

func newTestPoolLog(tb testing.TB, creds relay.Credentials, mod func(*relay.PoolConfig), m relay.Metrics, log *slog.Logger) *relay.Pool {
	tb.Helper()
	cfg := relay.PoolConfig{
		Credentials:  creds,
		Size:         2,
		WriteTimeout: 2 * time.Second,
		DialTimeout:  2 * time.Second,
		PingInterval: 200 * time.Millisecond,
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
	poolWaitFor(tb, 10*time.Second, "every pooled connection ready", func() bool {
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

func TestPoolDeliversInOrderPerConnection(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 4 }, m)
	waitAllReady(t, p)

	const n = 200
	sent := make([]relay.Message, n)
	var total int64
	for i := range n {
		sent[i] = seqMessage(i, i*37)
		total += int64(len(sent[i].Data))
		if err := p.Send(t.Context(), sent[i]); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := pl.collect(t, n, 10*time.Second)
	last := map[string]int{}
	for _, r := range got {
		var seq int
		if _, err := fmt.Sscanf(string(r.data[:7]), "%06d:", &seq); err != nil {
			t.Fatalf("bad message %q: %v", r.data[:min(len(r.data), 20)], err)
		}
		if want := sent[seq]; r.typ != want.Type || !bytes.Equal(r.data, want.Data) {
			t.Errorf("message %d: got %v %d bytes, want %v %d bytes, byte-exact", seq, r.typ, len(r.data), want.Type, len(want.Data))
		}
		if prev, ok := last[r.conn]; ok && seq <= prev {
			t.Errorf("connection %s: message %d after %d", r.conn, seq, prev)
		}
		last[r.conn] = seq
	}
	if len(last) != 4 {
		t.Errorf("messages arrived on %d connections, want all 4", len(last))
	}
	if got, want := m.sent.Load(), int64(n); got != want {
		t.Errorf("metrics: %d messages sent, want %d", got, want)
	}
	if got := m.bytes.Load(); got != total {
		t.Errorf("metrics: %d bytes sent, want %d", got, total)
	}
}

func TestPoolLargeMessages(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 1 }, nil)
	if err := p.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(rand.IntN(256))
	}
	text := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for _, m := range []relay.Message{{ID: "bin", Type: relay.MessageBinary, Data: bin}, {ID: "text", Type: relay.MessageText, Data: text}} {
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("send %s: %v", m.ID, err)
		}
		r := pl.collect(t, 1, 10*time.Second)[0]
		if r.typ != m.Type || !bytes.Equal(r.data, m.Data) {
			t.Errorf("%s: got %v %d bytes, want %v %d bytes, byte-exact", m.ID, r.typ, len(r.data), m.Type, len(m.Data))
		}
	}
	tooBig := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 1<<20+64<<10+1)}
	if err := p.Send(t.Context(), tooBig); !errors.Is(err, relay.ErrMessageTooLarge) {
		t.Errorf("send over MaxMessageBytes: got %v, want ErrMessageTooLarge", err)
	}
}

func TestPoolSpreadsOverListeners(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	a := startPoolListener(t, emu, "hc1", nil)
	b := startPoolListener(t, emu, "hc1", nil)
	// The relay picks a listener at random per connection: with 16
	// connections, all on one listener has probability 2^-15.
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 16 }, nil)
	waitAllReady(t, p)
	for i := range 160 {
		if err := p.Send(t.Context(), seqMessage(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	poolWaitFor(t, 10*time.Second, "160 messages", func() bool { return len(a.got)+len(b.got) == 160 })
	if len(a.got) == 0 || len(b.got) == 0 {
		t.Errorf("listener A got %d messages, B got %d; want both > 0", len(a.got), len(b.got))
	}
	if got := a.conns.Load() + b.conns.Load(); got != 16 {
		t.Errorf("listeners accepted %d connections, want 16", got)
	}
}

func TestPoolNoListenerFailsFastThenRecovers(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.DialTimeout = 5 * time.Second }, m)
	poolWaitFor(t, 5*time.Second, "not-ready reason", func() bool {
		_, reason := p.Ready()
		return reason == "no listener connected"
	})
	if ok, _ := p.Ready(); ok {
		t.Fatal("Ready with no listener")
	}
	if s := p.Stats(); s.Ready != 0 || s.Backoff+s.Connecting != s.Size || s.DialErrors == 0 || s.Reason != "no listener connected" {
		t.Errorf("Stats() = %+v; want every slot connecting or backing off, dial errors counted, the reason", s)
	}
	start := time.Now()
	err := p.Send(t.Context(), seqMessage(0, 10))
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Send took %v without a listener; want it to fail fast", elapsed)
	}
	if !errors.Is(err, relay.ErrUnavailable) || !strings.Contains(err.Error(), "no listener connected") {
		t.Errorf("Send: got %v, want ErrUnavailable saying no listener connected", err)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(wctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("WaitReady: got %v, want DeadlineExceeded naming the reason", err)
	}

	pl := startPoolListener(t, emu, "hc1", nil)
	rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer rcancel()
	if err := p.WaitReady(rctx); err != nil {
		t.Fatalf("pool did not become ready once a listener connected: %v (stats %+v)", err, p.Stats())
	}
	if ok, reason := p.Ready(); !ok || reason != "" {
		t.Errorf("Ready() = %v, %q; want true, \"\"", ok, reason)
	}
	if err := p.Send(t.Context(), seqMessage(1, 10)); err != nil {
		t.Fatal(err)
	}
	pl.collect(t, 1, 5*time.Second)
	if got := m.get(func(m *poolMetrics) int { return m.dials["not_found"] }); got == 0 {
		t.Error("no dial counted as not_found")
	}
	if got := m.get(func(m *poolMetrics) int { return m.rejected["unavailable"] }); got == 0 {
		t.Error("no rejection counted as unavailable")
	}
}

// sendUntilOK sends until a Send succeeds; every failure must be a fast
// ErrUnavailable (or ErrOverloaded while connections come back).
func sendUntilOK(tb testing.TB, p *relay.Pool, m relay.Message) {
	tb.Helper()
	poolWaitFor(tb, 10*time.Second, "a successful send", func() bool {
		start := time.Now()
		err := p.Send(context.Background(), m)
		if d := time.Since(start); d > 2*time.Second {
			tb.Fatalf("Send took %v", d)
		}
		if err != nil && !errors.Is(err, relay.ErrUnavailable) && !errors.Is(err, relay.ErrOverloaded) {
			tb.Fatalf("Send: %v", err)
		}
		return err == nil
	})
}

func TestPoolRecoversAfterDroppedConnections(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), nil, m)
	waitAllReady(t, p)
	if err := p.Send(t.Context(), seqMessage(0, 10)); err != nil {
		t.Fatal(err)
	}
	pl.collect(t, 1, 5*time.Second)
	dials := p.Stats().Dials

	emu.DropConnections()
	poolWaitFor(t, 10*time.Second, "connections replaced", func() bool {
		s := p.Stats()
		return s.Dials >= dials+2 && s.Ready == s.Size
	})
	// A Send racing the drop may have been written into a socket that was
	// already dead ("sent" is not "delivered"); this one must arrive.
	msg := relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("after the drop")}
	sendUntilOK(t, p, msg)
	pl.waitMessage(t, msg.Data, 5*time.Second)
	if got := m.get(func(m *poolMetrics) int { return m.closes[1006] }); got == 0 {
		t.Errorf("metrics: closes %v, want 1006 (dropped) counted", m.closes)
	}
}

func TestPoolReplacesConnectionClosedByRelay(t *testing.T) {
	t.Parallel()
	for _, code := range []websocket.StatusCode{
		websocket.StatusNormalClosure,   // listener shut the socket down
		websocket.StatusGoingAway,       // peer gone, entity deleted
		websocket.StatusPolicyViolation, // token expired
		websocket.StatusInternalError,
	} {
		t.Run(fmt.Sprint(int(code)), func(t *testing.T) {
			t.Parallel()
			emu := emulatortest.Start(t)
			// The listener closes every connection with code after its
			// first message.
			got := make(chan poolRecv, 100)
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.DisableKeepAlives = true
			l, err := relay.NewListener(relay.ListenerConfig{
				Credentials: emu.ListenerCredentials("hc1"),
				HTTPClient:  &http.Client{Transport: tr},
				ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
					typ, data, err := c.Read(ctx)
					if err != nil {
						return
					}
					got <- poolRecv{conn: c.ID(), typ: typ, data: data}
					c.Close(code, "test")
				},
			}, poolLogger(t, "listener"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			runDone := make(chan struct{})
			go func() { l.Run(ctx); close(runDone) }()
			t.Cleanup(func() { l.Close(); cancel(); <-runDone })
			if err := l.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			m := newPoolMetrics()
			p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 1 }, m)
			waitAllReady(t, p)

			first := relay.Message{Type: relay.MessageText, Data: []byte("first")}
			if err := p.Send(t.Context(), first); err != nil {
				t.Fatal(err)
			}
			r1 := <-got
			poolWaitFor(t, 10*time.Second, "the closed connection replaced", func() bool {
				return m.get(func(m *poolMetrics) int { return m.closes[int(code)] }) == 1 && p.Stats().Dials == 2 && p.Stats().Ready == 1
			})
			second := relay.Message{Type: relay.MessageText, Data: []byte("second")}
			sendUntilOK(t, p, second)
			select {
			case r2 := <-got:
				if !bytes.Equal(r2.data, second.Data) || r2.conn == r1.conn {
					t.Errorf("got %q on %s, want %q on a new connection (not %s)", r2.data, r2.conn, second.Data, r1.conn)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("second message not received")
			}
		})
	}
}

func TestPoolRecoversAfterListenerRestart(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	first := startPoolListener(t, emu, "hc1", nil)
	p := newTestPool(t, emu.Credentials("hc1"), nil, nil)
	waitAllReady(t, p)
	if err := p.Send(t.Context(), seqMessage(0, 10)); err != nil {
		t.Fatal(err)
	}
	first.collect(t, 1, 5*time.Second)

	first.stop()
	poolWaitFor(t, 10*time.Second, "pool not ready without a listener", func() bool {
		ok, reason := p.Ready()
		return !ok && reason == "no listener connected"
	})
	start := time.Now()
	if err := p.Send(t.Context(), seqMessage(1, 10)); !errors.Is(err, relay.ErrUnavailable) {
		t.Errorf("Send without a listener: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Send without a listener took %v; want it to fail fast", d)
	}

	second := startPoolListener(t, emu, "hc1", nil)
	msg := relay.Message{ID: "again", Type: relay.MessageText, Data: []byte("after the restart")}
	sendUntilOK(t, p, msg)
	second.waitMessage(t, msg.Data, 5*time.Second)
}

func TestPoolRefusedCredentials(t *testing.T) {
	t.Parallel()
	listenOnlyKey := emulatortest.RandomKey()
	emu := emulatortest.Start(t, func(c *emulator.Config) {
		c.Rules = append(c.Rules, emulator.Rule{Name: "listen-only", Key: listenOnlyKey, Rights: emulator.RightListen})
	})
	startPoolListener(t, emu, "hc1", nil)
	wrongKey := emu.Credentials("hc1")
	wrongKey.Key = emulatortest.RandomKey()
	noSend := emu.Credentials("hc1")
	noSend.KeyName, noSend.Key = "listen-only", listenOnlyKey

	for _, tt := range []struct {
		name  string
		creds relay.Credentials
		want  error
	}{
		{"wrong key", wrongKey, relay.ErrUnauthorized},
		{"no send right", noSend, relay.ErrForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, logs := poolLoggerW(t, "pool", slog.LevelDebug)
			m := newPoolMetrics()
			p := newTestPoolLog(t, tt.creds, nil, m, log)
			poolWaitFor(t, 5*time.Second, "credentials refused", func() bool {
				_, reason := p.Ready()
				return reason == "relay refused credentials"
			})
			err := p.Send(t.Context(), seqMessage(0, 10))
			if !errors.Is(err, tt.want) {
				t.Errorf("Send: got %v, want %v", err, tt.want)
			}
			if errors.Is(err, relay.ErrUnavailable) {
				t.Errorf("Send: %v also matches ErrUnavailable; the gateway must answer 502, not 503", err)
			}
			wctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := p.WaitReady(wctx); !errors.Is(err, tt.want) {
				t.Errorf("WaitReady: got %v, want %v at once", err, tt.want)
			}
			for _, s := range []string{tt.creds.Key, "sig=", "SharedAccessSignature"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains %q", err, s)
				}
			}
			testlog.AssertNoSecrets(t, logs.String(), tt.creds.Key, "sig=", "SharedAccessSignature")
			if got := m.get(func(m *poolMetrics) int { return m.rejected["unauthorized"] + m.rejected["forbidden"] }); got == 0 {
				t.Error("rejection not counted")
			}
		})
	}
}

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
	var ok atomic.Int64        // Sends that returned nil
	var blocked sync.WaitGroup // Sends still waiting when the listener resumes

	// The listener does not read, so the relay's buffers fill up and the
	// pool's writer eventually blocks in a write. Probe until it has: a
	// probe that is still queued at its deadline returns DeadlineExceeded
	// (its abandoned message keeps its slot until the writer skips it),
	// and one whose write has begun waits for that write.
	poolWaitFor(t, 60*time.Second, "the writer to stall", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		res := make(chan error, 1)
		blocked.Add(1)
		go func() {
			defer blocked.Done()
			defer cancel()
			err := p.Send(ctx, big)
			if err == nil {
				ok.Add(1)
			}
			res <- err
		}()
		select {
		case err := <-res:
			switch {
			case err == nil:
				return false
			case errors.Is(err, context.DeadlineExceeded):
				return true
			}
			t.Fatalf("probe Send: %v", err)
		case <-time.After(time.Second):
			return true // its write is stuck
		}
		return false
	})

	// With the writer stuck, fill the queue with requests we cancel later.
	qctx, qcancel := context.WithCancel(t.Context())
	defer qcancel()
	queued := make(chan error, queueSize)
	n := 0
	for q := p.Stats().Queued; q < queueSize; q = p.Stats().Queued {
		n++
		go func() { queued <- p.Send(qctx, big) }()
		poolWaitFor(t, 5*time.Second, "a message queued", func() bool { return p.Stats().Queued > q })
	}

	start := time.Now()
	if err := p.Send(t.Context(), big); !errors.Is(err, relay.ErrOverloaded) {
		t.Errorf("Send with every queue full: got %v, want ErrOverloaded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("rejecting took %v; want it immediate", d)
	}
	// Cancelling queued requests returns at once and leaves the
	// connection alone.
	qcancel()
	for range n {
		select {
		case err := <-queued:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled queued Send: got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a queued Send did not return after its ctx was cancelled")
		}
	}

	// The listener resumes: the stuck write completes, the abandoned
	// messages are skipped, and the one connection carries on.
	close(gate)
	done := make(chan struct{})
	go func() { blocked.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the Send whose write was stuck did not return after the listener resumed")
	}
	after := relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("after")}
	sendUntilOK(t, p, after) // abandoned messages hold their slots until the writer skips them
	got := pl.collect(t, int(ok.Load())+1, 20*time.Second)
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
	pl.collect(t, 50, 5*time.Second)
	if s := p.Stats(); s.Dials != 1 || pl.conns.Load() != 1 {
		t.Errorf("dials %d, listener connections %d; want 1 and 1", s.Dials, pl.conns.Load())
	}
}

func TestPoolRenewsBeforeTokenExpiry(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	m := newPoolMetrics()
	// Tokens live 3-4 s (minted to the second); connections are replaced
	// 3 s before expiry, so within about a second of being dialled.
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) {
		c.TokenTTL, c.RenewBefore = 4*time.Second, 3*time.Second
	}, m)
	waitAllReady(t, p)
	sent := 0
	poolWaitFor(t, 20*time.Second, "4 renewals", func() bool {
		if err := p.Send(t.Context(), seqMessage(sent, 100)); err != nil {
			t.Fatalf("send %d during renewal: %v", sent, err)
		}
		sent++
		return p.Stats().Renewals >= 4
	})
	pl.collect(t, sent, 10*time.Second)
	if got := pl.conns.Load(); got < 2+4 {
		t.Errorf("listener accepted %d connections, want at least 6", got)
	}
	// Replaced connections are closed with 1000 after flushing.
	select {
	case code := <-pl.closes:
		if code != int(websocket.StatusNormalClosure) {
			t.Errorf("replaced connection closed with %d, want 1000", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("no replaced connection was closed")
	}
	if got := m.get(func(m *poolMetrics) int { return len(m.closes) }); got != 0 {
		t.Errorf("connections lost during renewal: %v", m.closes)
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
	}, poolLogger(t, "pool"), m)
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
	poolWaitFor(t, 10*time.Second, "traffic", func() bool { return ok.Load() > 200 })
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
	pl.collect(t, int(ok.Load()), 10*time.Second)
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

func TestPoolReplacesUnresponsiveConnection(t *testing.T) {
	t.Parallel()
	s := startPoolSink(t)
	s.stall.Store(true) // accepts, never reads: no pongs, writes block
	m := newPoolMetrics()
	p := newTestPool(t, s.creds, func(c *relay.PoolConfig) {
		c.Size, c.PingInterval, c.WriteTimeout = 1, 50*time.Millisecond, 200*time.Millisecond
		c.StallCloseAfter = 500 * time.Millisecond
		c.MaxMessageBytes = 64 << 20
	}, m)
	// A ping without a pong stalls the connection (it is not thrown away
	// with what it wrote) and a replacement is dialled.
	poolWaitFor(t, 10*time.Second, "a failed ping to stall and replace the connection", func() bool {
		return m.stalls.Load() > 0 && p.Stats().Dials >= 2
	})

	// A write that cannot finish stalls the connection; once it has been
	// stalled for StallCloseAfter it is closed, and the message, partly
	// written, is reported as possibly delivered, never retried.
	huge := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 32<<20)}
	start := time.Now()
	err := p.Send(t.Context(), huge)
	if !errors.Is(err, relay.ErrPartialWrite) && !errors.Is(err, relay.ErrUnavailable) {
		t.Errorf("Send to a stalled peer: got %v, want ErrPartialWrite (or ErrUnavailable between stalls)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send to a stalled peer took %v", d)
	}
	if errors.Is(err, relay.ErrPartialWrite) {
		if st := p.Stats(); st.LostFrames == 0 {
			t.Errorf("stats %+v: no lost frame counted for the closed stalled write", st)
		}
	}

	s.stall.Store(false)
	sendUntilOK(t, p, seqMessage(0, 10))
}

func TestPoolRetriesOnAnotherConnection(t *testing.T) {
	t.Parallel()
	s := startPoolSink(t, func(s *poolSink) { s.smallBufs = true })
	s.stallFirst.Store(true) // the first connection never reads
	m := newPoolMetrics()
	// Small socket buffers on both ends, so the stalled connection fills
	// up after a message or two.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetWriteBuffer(64 << 10)
		}
		return c, err
	}
	p := newTestPool(t, s.creds, func(c *relay.PoolConfig) {
		c.Size, c.QueueSize = 2, 4
		c.WriteTimeout, c.PingInterval = 500*time.Millisecond, time.Minute
		c.StallCloseAfter = time.Second // the sink never resumes
		c.HTTPClient = &http.Client{Transport: tr}
	}, m)
	waitAllReady(t, p)

	// More data than the stalled connection's buffers hold: it stalls
	// with messages queued, which are retried on the other connection, so
	// every Send succeeds (what it had written is delivered when it
	// drains).
	// 8 senders never fill two queues of 4, but one queue after the
	// stalled connection is gone: ErrOverloaded is retried, like a client
	// honouring Retry-After would.
	const senders, each = 8, 8
	const n = senders * each
	msg := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 256<<10)}
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				err := p.Send(t.Context(), msg)
				for errors.Is(err, relay.ErrOverloaded) {
					runtime.Gosched()
					err = p.Send(t.Context(), msg)
				}
				if err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Sends did not return (stats %+v)", p.Stats())
	}
	if m.stalls.Load() == 0 {
		t.Errorf("the first connection never stalled")
	}
	if got, want := m.sent.Load(), int64(n); got != want {
		t.Errorf("metrics: %d messages written, want %d", got, want)
	}
}

func TestPoolRejectsBadMessages(t *testing.T) {
	t.Parallel()
	s := startPoolSink(t)
	m := newPoolMetrics()
	p := newTestPool(t, s.creds, func(c *relay.PoolConfig) { c.MaxMessageBytes = 100 }, m)
	waitAllReady(t, p)
	for _, tt := range []struct {
		name   string
		msg    relay.Message
		want   error
		reason string
	}{
		{"too large", relay.Message{Type: relay.MessageText, Data: make([]byte, 101)}, relay.ErrMessageTooLarge, "too_large"},
		{"no type", relay.Message{Data: []byte("x")}, nil, "invalid_type"},
		{"control type", relay.Message{Type: 9, Data: []byte("x")}, nil, "invalid_type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Send(t.Context(), tt.msg)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Send: got %v, want %v", err, tt.want)
			}
		})
	}
	if err := p.Send(t.Context(), relay.Message{Type: relay.MessageText, Data: make([]byte, 100)}); err != nil {
		t.Errorf("Send at the limit: %v", err)
	}
	if err := p.Send(t.Context(), relay.Message{Type: relay.MessageBinary}); err != nil {
		t.Errorf("Send of an empty message: %v", err)
	}
	poolWaitFor(t, 5*time.Second, "2 messages at the sink", func() bool { return s.msgs.Load() == 2 })
	if got := m.get(func(m *poolMetrics) int { return m.rejected["too_large"]*10 + m.rejected["invalid_type"] }); got != 12 {
		t.Errorf("rejections %v", m.rejected)
	}
}

func TestNewPoolRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := relay.Credentials{Host: "127.0.0.1:1", EntityPath: "hc1", KeyName: "k", Key: "a2V5", Insecure: true}
	for _, tt := range []struct {
		name string
		cfg  relay.PoolConfig
		want string
	}{
		{"no host", relay.PoolConfig{Credentials: relay.Credentials{EntityPath: "hc1"}}, "host"},
		{"key without name", relay.PoolConfig{Credentials: relay.Credentials{Host: "h", EntityPath: "e", Key: "k"}}, "SharedAccessKeyName"},
		{"negative size", relay.PoolConfig{Credentials: good, Size: -1}, "Size"},
		{"huge size", relay.PoolConfig{Credentials: good, Size: 100000}, "Size"},
		{"negative queue", relay.PoolConfig{Credentials: good, QueueSize: -1}, "QueueSize"},
		{"negative timeout", relay.PoolConfig{Credentials: good, WriteTimeout: -time.Second}, "WriteTimeout"},
		{"renew after expiry", relay.PoolConfig{Credentials: good, TokenTTL: time.Minute, RenewBefore: time.Hour}, "RenewBefore"},
		{"negative backoff", relay.PoolConfig{Credentials: good, Backoff: []time.Duration{-1}}, "Backoff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := relay.NewPool(tt.cfg, nil, nil)
			if err == nil {
				p.Close(t.Context())
				t.Fatal("NewPool accepted the config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "a2V5") {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestPoolSendAllocs(t *testing.T) {
	s := startPoolSink(t)
	p := newPoolOnSink(t, s, relay.PoolConfig{Size: 2})
	msg := relay.Message{ID: "a", Type: relay.MessageBinary, Data: make([]byte, 512)}
	ctx := context.Background()
	for range 100 { // warm up the free list and the connections' buffers
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	poolWaitFor(t, 5*time.Second, "warm-up messages at the sink", func() bool { return s.msgs.Load() == 100 })
	sent := int64(100)
	// AllocsPerRun counts every goroutine's allocations: the caller, the
	// pool's writer and reader, coder/websocket, and the sink.
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		sent++
	})
	if allocs != 0 {
		t.Errorf("Send allocates %v times per message, want 0", allocs)
	}
	poolWaitFor(t, 5*time.Second, "all messages at the sink", func() bool { return s.msgs.Load() == sent })
}

func TestPoolTapsEveryConnection(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("SIOCOUTQ is Linux only")
	}
	s := startPoolSink(t)
	p := newTestPool(t, s.creds, func(c *relay.PoolConfig) { c.Size = 3 }, nil)
	waitAllReady(t, p)
	if got := p.Tapped(); got != 3 {
		t.Errorf("%d of 3 connections can read their unsent bytes", got)
	}
}

func TestPoolCoalescesWithoutMixingMessages(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	pl := startPoolListener(t, emu, "hc1", nil)
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size, c.QueueSize = 1, 256 }, nil)
	waitAllReady(t, p)
	// Many concurrent senders on one connection: the writer batches what
	// is queued into one socket write; every message must still arrive
	// whole, once, as its own WebSocket message.
	const senders, each = 16, 50
	msgs := make([]relay.Message, senders*each)
	for n := range msgs {
		msgs[n] = seqMessage(n, 10+n%3000)
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				m := msgs[s*each+i]
				err := p.Send(t.Context(), m)
				for errors.Is(err, relay.ErrOverloaded) {
					runtime.Gosched()
					err = p.Send(t.Context(), m)
				}
				if err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := pl.collect(t, senders*each, 20*time.Second)
	seen := map[string]bool{}
	for _, g := range got {
		if seen[string(g.data)] {
			t.Fatalf("duplicate message %.20q", g.data)
		}
		seen[string(g.data)] = true
	}
	for n, want := range msgs {
		if !seen[string(want.Data)] {
			t.Fatalf("message %d missing or corrupted", n)
		}
	}
}
