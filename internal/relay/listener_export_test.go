package relay

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
