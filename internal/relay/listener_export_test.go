package relay

import "context"

// Sessions reports how many control channels l has opened, so tests can
// observe reconnects.
func (l *Listener) Sessions() int64 { return l.sessions.Load() }

// RendezvousDials reports how many request rendezvous l has dialled.
func (l *Listener) RendezvousDials() int64 { return l.rvDials.Load() }

// Connected reports whether the control channel is open.
func (l *Listener) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

// ServeInlineAsync serves cmd as the control channel's reader serves an
// inline request, on a handler goroutine, and passes the encoded response
// to done instead of the control channel.
func (l *Listener) ServeInlineAsync(ctx context.Context, cmd *RequestCommand, body []byte, done func(msg, body []byte)) {
	l.spawn(func() {
		resp := l.serveHTTP(ctx, cmd, body)
		done(resp.encode(cmd.ID))
		resp.free()
	})
}
