package relay_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/emulator/emulatortest"
	"github.com/relaygate/relaygate/internal/relay"
)

// ExamplePool sends a message through a pool of connect WebSockets. A
// relay emulator on loopback stands in for Azure Relay, and a Listener
// prints what arrives.
func ExamplePool() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	emu, err := emulator.New(emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      []emulator.Rule{{Name: "root", Key: emulatortest.RandomKey(), Rights: emulator.RightManage}},
		AutoCreate: true,
	}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := emu.Open(); err != nil {
		log.Fatal(err)
	}
	defer emu.Close(context.Background())

	received := make(chan string, 1)
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
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	go l.Run(ctx)
	defer l.Close()
	if err := l.WaitConnected(ctx); err != nil {
		log.Fatal(err)
	}

	// The pool dials in the background; WaitReady is optional (Send
	// fails fast with ErrUnavailable until a connection is up).
	pool, err := relay.NewPool(relay.PoolConfig{Credentials: emu.Credentials("hc1"), Size: 2}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())
	if err := pool.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	// The request's ctx bounds only the wait; it never closes a pooled
	// connection.
	reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
	defer reqCancel()
	err = pool.Send(reqCtx, relay.Message{ID: "m1", Type: relay.MessageText, Data: []byte(`{"message":"hello"}`)})
	switch {
	case errors.Is(err, relay.ErrOverloaded), errors.Is(err, relay.ErrUnavailable):
		fmt.Println("retry later:", err) // the gateway answers 503 + Retry-After
	case err != nil:
		fmt.Println("error:", err)
	default:
		fmt.Println("sent")
	}
	fmt.Println("listener got:", <-received)

	ok, reason := pool.Ready()
	fmt.Printf("ready: %v %q\n", ok, reason)

	// Output:
	// sent
	// listener got: {"message":"hello"}
	// ready: true ""
}
