package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/relaygate/relaygate/internal/console"
	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/relay"
)

// maxLogged is how much of a message the local listener logs.
const maxLogged = 512

// logMessages is the local listener's ConnHandler: it logs every message
// on the connection until the sender closes it, and publishes it to feed.
func logMessages(log *slog.Logger, feed *console.Feed) func(ctx context.Context, c *relay.ListenerConn) {
	return func(ctx context.Context, c *relay.ListenerConn) {
		log.Info("sender connected", "id", c.ID())
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				if s := websocket.CloseStatus(err); s == websocket.StatusNormalClosure || s == websocket.StatusGoingAway || ctx.Err() != nil {
					log.Info("sender disconnected", "id", c.ID())
				} else {
					log.Info("sender connection ended", "id", c.ID(), "err", err)
				}
				return
			}
			log.Info("listener received message", "type", typ.String(), "bytes", len(data), "data", preview(typ, data))
			feed.Publish(console.Event{Kind: console.KindMessage, Conn: c.ID(), Type: typ.String(), Data: data})
		}
	}
}

// echoRequests is the local listener's HTTP handler for
// ?delivery=request: it logs the request and answers 200 with a short
// JSON receipt. Each request is published to feed.
func echoRequests(log *slog.Logger, limit int64, feed *console.Feed) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil || int64(len(data)) > limit {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		typ := relay.MessageBinary
		if utf8.Valid(data) {
			typ = relay.MessageText
		}
		log.Info("listener received request", "method", r.Method, "content_type", r.Header.Get("Content-Type"),
			"bytes", len(data), "data", preview(typ, data))
		feed.Publish(console.Event{Kind: console.KindRequest, Type: typ.String(), Method: r.Method,
			ContentType: r.Header.Get("Content-Type"), Data: data})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"received":%d}`, len(data))
	})
}

// preview is the start of a message for the log: text as is, binary as
// base64.
func preview(typ relay.MessageType, data []byte) string {
	cut := data
	if len(cut) > maxLogged {
		cut = cut[:maxLogged]
		for i := 0; i < 3 && typ == relay.MessageText && !utf8.Valid(cut); i++ {
			cut = cut[:len(cut)-1] // do not split a rune
		}
	}
	s := string(cut)
	if typ == relay.MessageBinary || !utf8.Valid(cut) {
		s = "base64:" + base64.StdEncoding.EncodeToString(cut)
	}
	if len(cut) < len(data) {
		s += "…"
	}
	return s
}

// startLocal starts the in-process emulator on a random loopback port with
// a Send-only rule for the gateway and a Listen-only rule for the
// listener (localRules), and a listener that logs what it receives and
// publishes it to the console's feed.
func (g *Gateway) startLocal() error {
	emu, err := emulator.New(emulator.Config{
		Addr:       "127.0.0.1:0",
		Rules:      localRules(),
		AutoCreate: true,
	}, g.log.With("component", "emulator"), nil)
	if err != nil {
		return err
	}
	if err := emu.Open(); err != nil {
		return err
	}
	g.emu = emu
	g.creds = emu.Credentials(LocalEntity)
	g.feed = console.NewFeed(console.FeedConfig{}, g.log.With("component", "console"))
	l, err := relay.NewListener(relay.ListenerConfig{
		Credentials: emu.ListenerCredentials(LocalEntity),
		ConnHandler: logMessages(g.log.With("component", "listener"), g.feed),
		HTTPHandler: echoRequests(g.log.With("component", "listener"), g.cfg.MaxBodyBytes, g.feed),
		ReadLimit:   g.cfg.MaxBodyBytes + 64<<10,
	}, g.log.With("component", "listener"))
	if err != nil {
		return err
	}
	g.listener = l
	g.lnDone = make(chan struct{})
	go func() {
		defer close(g.lnDone)
		if err := l.Run(context.Background()); err != nil {
			g.log.Error("local listener stopped", "err", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.WaitConnected(ctx)
}
