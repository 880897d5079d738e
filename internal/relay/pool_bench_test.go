package relay_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// poolSink is a minimal connect endpoint on 127.0.0.1 that accepts every
// sender WebSocket and discards what it reads with a reused buffer, so that
// allocation counts measure the pool's send path rather than a receiver.
// It stands in for the relay only where the relay is not the unit under
// test (allocation and throughput measurements); behaviour tests use the
// emulator.
type poolSink struct {
	creds      relay.Credentials
	msgs       atomic.Int64
	bytes      atomic.Int64
	conns      atomic.Int64
	stall      atomic.Bool // when set, new reads block until the sink stops
	stallFirst atomic.Bool // when set, the first connection never reads
}

func startPoolSink(tb testing.TB, opts ...func(*poolSink)) *poolSink {
	tb.Helper()
	s := &poolSink{}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Handler:           s.handler(ctx),
	}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		cancel()
		srv.Close()
	})
	s.creds = relay.Credentials{Host: ln.Addr().String(), EntityPath: "sink", KeyName: "k", Key: "a2V5", Insecure: true}
	return s
}

// handler accepts connect WebSockets and counts what they carry until ctx
// is done.
func (s *poolSink) handler(ctx context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, relay.HCPathPrefix) || r.URL.Query().Get(relay.QueryAction) != string(relay.ActionConnect) {
			http.Error(w, "not a connect", http.StatusBadRequest)
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		n := s.conns.Add(1)
		ws.SetReadLimit(64 << 20)
		defer ws.CloseNow()
		go func() { <-ctx.Done(); ws.CloseNow() }()
		if n == 1 && s.stallFirst.Load() {
			<-ctx.Done()
			return
		}
		buf := make([]byte, 32<<10)
		for {
			if s.stall.Load() {
				<-ctx.Done()
				return
			}
			_, rd, err := ws.Reader(context.Background())
			if err != nil {
				return
			}
			var n int64
			for {
				m, err := rd.Read(buf)
				n += int64(m)
				if err == io.EOF {
					break
				}
				if err != nil {
					return
				}
			}
			s.msgs.Add(1)
			s.bytes.Add(n)
		}
	})
}

// newPoolOnSink returns a ready pool over a sink.
func newPoolOnSink(tb testing.TB, s *poolSink, cfg relay.PoolConfig) *relay.Pool {
	tb.Helper()
	cfg.Credentials = s.creds
	p, err := relay.NewPool(cfg, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	// WaitReady returns with the first conn; wait for all of them so
	// every run measures the same pool.
	waitFor(tb, "every connection ready", func() bool { return p.Stats().Ready == p.Stats().Size })
	return p
}

func BenchmarkPoolSend(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100B", 100}, {"4KiB", 4 << 10}, {"64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			s := startPoolSink(b)
			p := newPoolOnSink(b, s, relay.PoolConfig{})
			msg := relay.Message{ID: "bench", Type: relay.MessageBinary, Data: make([]byte, size.n)}
			ctx := context.Background()
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Send(ctx, msg); err != nil && !errors.Is(err, relay.ErrOverloaded) {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkPoolSendSerial(b *testing.B) {
	s := startPoolSink(b)
	p := newPoolOnSink(b, s, relay.PoolConfig{})
	msg := relay.Message{ID: "bench", Type: relay.MessageBinary, Data: make([]byte, 100)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolSendEmulator measures the whole path: pool, emulator and a
// listener. Its allocations are mostly the emulator's and the listener's
// (which reads each message into a new slice), not the pool's; the sink
// benchmarks above isolate the pool.
func BenchmarkPoolSendEmulator(b *testing.B) {
	emu := emulatortest.Start(b)
	startBenchListener(b, relay.ListenerConfig{
		Credentials: emu.ListenerCredentials("hc1"),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		},
	})
	p := newTestPool(b, emu.Credentials("hc1"), func(c *relay.PoolConfig) { c.Size = 4; c.PingInterval = 20 * time.Second }, nil)
	waitAllReady(b, p)
	msg := relay.Message{Type: relay.MessageBinary, Data: make([]byte, 4<<10)}
	b.SetBytes(int64(len(msg.Data)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Send(b.Context(), msg); err != nil && !errors.Is(err, relay.ErrOverloaded) {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPoolSendConcurrent is BenchmarkPoolSend with 32 senders per
// CPU, as behind a busy gateway: several messages wait in each
// connection's queue, which the writer coalesces into one socket write.
func BenchmarkPoolSendConcurrent(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100B", 100}, {"4KiB", 4 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			s := startPoolSink(b)
			p := newPoolOnSink(b, s, relay.PoolConfig{QueueSize: 256})
			msg := relay.Message{ID: "bench", Type: relay.MessageBinary, Data: make([]byte, size.n)}
			ctx := context.Background()
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Send(ctx, msg); err != nil && !errors.Is(err, relay.ErrOverloaded) {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
