package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

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
	got := pl.collect(t, n)
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
		r := pl.collect(t, 1)[0]
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
	waitFor(t, "160 messages", func() bool { return len(a.got)+len(b.got) == 160 })
	if len(a.got) == 0 || len(b.got) == 0 {
		t.Errorf("listener A got %d messages, B got %d; want both > 0", len(a.got), len(b.got))
	}
	if got := a.conns.Load() + b.conns.Load(); got != 16 {
		t.Errorf("listeners accepted %d connections, want 16", got)
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
	waitFor(t, "2 messages at the sink", func() bool { return s.msgs.Load() == 2 })
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
	waitFor(t, "warm-up messages at the sink", func() bool { return s.msgs.Load() == 100 })
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
	waitFor(t, "all messages at the sink", func() bool { return s.msgs.Load() == sent })
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
	got := pl.collect(t, senders*each)
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
