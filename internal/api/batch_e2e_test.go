package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
	"github.com/relaygate/relaygate/internal/testlog"
)

// TestBatchThroughTheEmulator posts a batch to the api handler in a real
// http.Server whose Relayer is a real relay.Pool (one connection, so the
// listener's order is the batch's) to the emulator, and reads every item,
// in order, at a real listener.
func TestBatchThroughTheEmulator(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	emu := emulatortest.Start(t)
	received := make(chan string, 100)
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials("hc1"),
		ConnHandler: func(ctx context.Context, c *relay.ListenerConn) {
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				received <- string(data)
			}
		},
	}, testlog.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	go l.Run(ctx)
	t.Cleanup(func() { l.Close() })
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err := relay.NewPool(relay.PoolConfig{Credentials: emu.Credentials("hc1"), Size: 1}, testlog.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(context.Background()) })
	if err := pool.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Config{Credentials: emu.Credentials("hc1")}, pool, nil, testlog.Logger(t), nil)
	srv := s.HTTPServer(s.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const n = 50
	var body bytes.Buffer
	for i := range n {
		fmt.Fprintf(&body, "{\"id\":\"m-%d\",\"message\":{\"seq\": %d}}\n", i, i)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ln.Addr().String()+"/messages:batch", &body)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got batchAnswer
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got.Sent != n {
		t.Fatalf("status %d, %d sent (%v)", resp.StatusCode, got.Sent, err)
	}
	for i := range n {
		select {
		case m := <-received:
			if want := fmt.Sprintf(`{"id":"m-%d","message":{"seq": %d}}`, i, i); m != want {
				t.Fatalf("message %d: got %s, want %s", i, m, want)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d messages reached the listener", i, n)
		}
	}
	if !strings.HasPrefix(got.Results[n-1].ID, "m-") {
		t.Errorf("last result %+v", got.Results[n-1])
	}
}
