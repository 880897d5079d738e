package emulator

// Metrics receives the emulator's counters and gauges. Implementations must
// be safe for concurrent use and must not block. Labels are reasons, never
// entity names, ids or URLs.
type Metrics interface {
	// ListenersChanged adds delta (+1 or -1) to the number of connected
	// control channels.
	ListenersChanged(delta int)
	// PendingChanged adds delta to the number of senders waiting for a
	// listener (accepts and HTTP requests in flight).
	PendingChanged(delta int)
	// MessageRelayed counts one WebSocket message of n bytes relayed
	// between a sender and a listener (either direction).
	MessageRelayed(n int64)
	// Rejected counts a connection or request the emulator refused or
	// failed, by reason: "unauthorized", "forbidden", "not_found",
	// "no_listener", "listener_limit", "url_not_valid", "rejected",
	// "timeout", "bad_request", "too_large", "unavailable",
	// "token_expired".
	Rejected(reason string)
}

// NopMetrics discards everything. It is the default when New gets nil.
type NopMetrics struct{}

func (NopMetrics) ListenersChanged(int) {}
func (NopMetrics) PendingChanged(int)   {}
func (NopMetrics) MessageRelayed(int64) {}
func (NopMetrics) Rejected(string)      {}
