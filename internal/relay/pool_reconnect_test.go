package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestPoolNoListenerFailsFastThenRecovers(t *testing.T) {
	t.Parallel()
	emu := emulatortest.Start(t)
	m := newPoolMetrics()
	p := newTestPool(t, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.DialTimeout = 5 * time.Second }, m)
	// Slots pass through other states between dial attempts: wait for the
	// steady state rather than asserting it at one moment.
	var last relay.PoolStats
	waitFor(t, "every slot connecting or backing off, dial errors counted, the reason", func() bool {
		last = p.Stats()
		return last.Ready == 0 && last.Backoff+last.Connecting == last.Size && last.DialErrors > 0 && last.Reason == "no listener connected"
	})
	if ok, reason := p.Ready(); ok || reason != "no listener connected" {
		t.Fatalf("Ready() = %v, %q with no listener (stats %+v)", ok, reason, last)
	}
	// Send must fail rather than wait for a connection: were it to wait,
	// it would only return at this deadline, with DeadlineExceeded.
	err := p.Send(failFastCtx(t), seqMessage(0, 10))
	if !errors.Is(err, relay.ErrUnavailable) || !strings.Contains(err.Error(), "no listener connected") {
		t.Errorf("Send: got %v, want ErrUnavailable saying no listener connected", err)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(wctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("WaitReady: got %v, want DeadlineExceeded naming the reason", err)
	}
	if err := p.WaitAllReady(wctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no listener") {
		t.Errorf("WaitAllReady: got %v, want DeadlineExceeded naming the reason", err)
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
	// The other slots come back after their backoff (5 s at most).
	actx, acancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer acancel()
	if err := p.WaitAllReady(actx); err != nil {
		t.Fatalf("WaitAllReady: %v (stats %+v)", err, p.Stats())
	}
	if s := p.Stats(); s.Ready != s.Size || s.Size < 2 {
		t.Errorf("WaitAllReady returned with %d of %d connections ready", s.Ready, s.Size)
	}
	if err := p.Send(t.Context(), seqMessage(1, 10)); err != nil {
		t.Fatal(err)
	}
	pl.collect(t, 1)
	if got := m.get(func(m *poolMetrics) int { return m.dials["not_found"] }); got == 0 {
		t.Error("no dial counted as not_found")
	}
	if got := m.get(func(m *poolMetrics) int { return m.rejected["unavailable"] }); got == 0 {
		t.Error("no rejection counted as unavailable")
	}
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
	pl.collect(t, 1)
	dials := p.Stats().Dials

	emu.DropConnections()
	waitFor(t, "connections replaced", func() bool {
		s := p.Stats()
		return s.Dials >= dials+2 && s.Ready == s.Size
	})
	// A Send racing the drop may have been written into a socket that was
	// already dead ("sent" is not "delivered"); this one must arrive.
	msg := relay.Message{ID: "after", Type: relay.MessageText, Data: []byte("after the drop")}
	sendUntilOK(t, p, msg)
	pl.waitMessage(t, msg.Data)
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
			}, testLogger(t, "listener"))
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
			waitFor(t, "the closed connection replaced", func() bool {
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
	first.collect(t, 1)

	first.stop()
	waitFor(t, "pool not ready without a listener", func() bool {
		ok, reason := p.Ready()
		return !ok && reason == "no listener connected"
	})
	if err := p.Send(failFastCtx(t), seqMessage(1, 10)); !errors.Is(err, relay.ErrUnavailable) {
		t.Errorf("Send without a listener: got %v, want ErrUnavailable at once", err)
	}

	second := startPoolListener(t, emu, "hc1", nil)
	msg := relay.Message{ID: "again", Type: relay.MessageText, Data: []byte("after the restart")}
	sendUntilOK(t, p, msg)
	second.waitMessage(t, msg.Data)
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
			log, logs := testlog.New(t)
			m := newPoolMetrics()
			p := newTestPoolLog(t, tt.creds, nil, m, log)
			waitFor(t, "credentials refused", func() bool {
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
	waitFor(t, "a failed ping to stall and replace the connection", func() bool {
		return m.stalls.Load() > 0 && p.Stats().Dials >= 2
	})

	// A write that cannot finish stalls the connection; once it has been
	// stalled for StallCloseAfter it is closed, and the message, partly
	// written, is reported as possibly delivered, never retried.
	huge := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 32<<20)}
	err := p.Send(failFastCtx(t), huge)
	if !errors.Is(err, relay.ErrPartialWrite) && !errors.Is(err, relay.ErrUnavailable) {
		t.Errorf("Send to a stalled peer: got %v, want ErrPartialWrite (or ErrUnavailable between stalls), not a hang", err)
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
	// In-memory connections and a fake clock: net.Pipe has no buffer, so
	// the stalled connection's writer blocks at once, and its WriteTimeout
	// expires in fake time only, never the healthy connection's under CPU
	// load.
	synctest.Test(t, func(t *testing.T) {
		s := &poolSink{}
		s.stallFirst.Store(true) // the first connection never reads
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		client := serveMem(t, s.handler(ctx))
		creds := relay.Credentials{Host: memHost, EntityPath: "sink", KeyName: "k", Key: "a2V5", Insecure: true}
		m := newPoolMetrics()
		p := newTestPool(t, creds, func(c *relay.PoolConfig) {
			c.Size, c.QueueSize = 2, 4
			c.WriteTimeout, c.PingInterval = 500*time.Millisecond, time.Minute
			c.HTTPClient = client
		}, m)
		waitAllReady(t, p)

		// The stalled connection's writer blocks, its write stalls the
		// connection with messages in flight and queued. Each is retried
		// on the other connection (none was partly written: the pipe took
		// no byte), so every Send succeeds.
		// 8 senders never fill two queues of 4, but one queue after the
		// stalled connection is gone: ErrOverloaded is retried, like a
		// client honouring Retry-After would.
		const senders, each = 8, 8
		const n = senders * each
		msg := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 16<<10)}
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for range each {
					err := p.Send(t.Context(), msg)
					for errors.Is(err, relay.ErrOverloaded) {
						time.Sleep(time.Millisecond) // fake time: let the queue drain
						err = p.Send(t.Context(), msg)
					}
					if err != nil {
						t.Errorf("Send: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if m.stalls.Load() == 0 {
			t.Errorf("the first connection never stalled")
		}
		if got, want := m.sent.Load(), int64(n); got != want {
			t.Errorf("metrics: %d messages written, want %d", got, want)
		}
		cancel()
	})
}
