package relay

import "fmt"

// ConnState is the state of one pooled connection (or of the slot waiting
// to get one). Metrics implementations use String as a label value.
type ConnState int32

// Connection states. A slot's connection goes
// none → connecting → ready → none, with backoff between failed dials and
// after a lost connection; a connection replaced before its token expires
// goes ready → retiring → none while its replacement goes
// none → connecting → ready; a connection whose listener stops reading
// goes ready → stalled → none.
const (
	// StateNone: not started, or gone. Never counted.
	StateNone ConnState = iota
	// StateConnecting: a dial is in progress.
	StateConnecting
	// StateReady: connected and carrying messages.
	StateReady
	// StateBackoff: waiting before the next dial.
	StateBackoff
	// StateRetiring: replaced or shutting down; writing what is already
	// queued, then closing with a close handshake.
	StateRetiring
	// StateStalled: its listener stopped reading; out of rotation, kept
	// open until what it wrote drains (then closed with 1000) or until
	// StallCloseAfter.
	StateStalled

	numStates
)

func (s ConnState) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateConnecting:
		return "connecting"
	case StateReady:
		return "ready"
	case StateBackoff:
		return "backoff"
	case StateRetiring:
		return "retiring"
	case StateStalled:
		return "stalled"
	}
	return fmt.Sprintf("ConnState(%d)", int32(s))
}

// Metrics receives the pool's events. The Prometheus implementation lives
// in cmd; relay only calls these methods. Implementations must be safe for
// concurrent use and must not block or call back into the pool. MessageSent
// is on the send path (once per message) and must not allocate; the other
// methods are called once per connection event or rejected request.
// Arguments are states, reasons and codes, never ids or URLs, so they are
// safe as label values.
type Metrics interface {
	// ConnStateChanged reports that one connection moved between states.
	// A gauge per state decrements from and increments to; StateNone is
	// never counted.
	ConnStateChanged(from, to ConnState)
	// Dialed reports the result of one dial: "ok", or the failure reason
	// "unauthorized", "forbidden", "not_found" (no listener), "no_entity"
	// (no such hybrid connection), "timeout",
	// "relay_error" (5xx or other status), "network" or "canceled".
	Dialed(result string)
	// ConnClosed reports a connection that the relay or the network ended:
	// the close code the relay sent (1000, 1001, 1008, 1011, …), or 1006
	// when it broke without one (reset, failed ping or write timeout).
	// Closes the pool starts itself (token renewal, Close) are not reported
	// here; they show as state changes.
	ConnClosed(code int)
	// MessageSent reports one message written to a healthy connection and
	// the size of its payload.
	MessageSent(bytes int)
	// Rejected reports a Send that did not send, by reason: "queue_full",
	// "unavailable", "unauthorized", "forbidden", "closed", "too_large",
	// "invalid_type", "canceled", "deadline", "queue_wait" (waited
	// MaxQueueWait unwritten), "partial_write" (the frame was partly
	// written: the message may have been delivered).
	Rejected(reason string)
}

// LossMetrics is an optional interface of a Metrics: FramesMaybeLost
// reports frames (and their bytes) that a stalled connection had written,
// answered as sent, and not seen acknowledged when it was closed after
// PoolConfig.StallCloseAfter.
type LossMetrics interface {
	FramesMaybeLost(frames, bytes int)
}

// nopMetrics is a Metrics that discards everything; NewPool uses it when
// given nil.
type nopMetrics struct{}

// ConnStateChanged does nothing.
func (nopMetrics) ConnStateChanged(from, to ConnState) {}

// Dialed does nothing.
func (nopMetrics) Dialed(result string) {}

// ConnClosed does nothing.
func (nopMetrics) ConnClosed(code int) {}

// MessageSent does nothing.
func (nopMetrics) MessageSent(bytes int) {}

// Rejected does nothing.
func (nopMetrics) Rejected(reason string) {}
