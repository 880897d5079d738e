package relay

import (
	"errors"
	"fmt"
	"time"
)

// MessageType is a WebSocket message type.
type MessageType int

// Message types, numbered as in RFC 6455 opcodes.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// Message is one message the gateway relays: one WebSocket frame of Type
// holding Data. ID identifies it in logs and replies. The pool never
// modifies Data and does not retain it after Send returns.
//
// Deadline, when not zero, bounds Send as a context deadline would: once
// it passes, a message whose write has not begun is withdrawn and Send
// returns context.DeadlineExceeded (or, if no connection was ready, an
// error matching ErrUnavailable). It spares a caller with a timeout per
// message a context.WithTimeout, and with it a timer and a registration
// with the parent context, on every send.
type Message struct {
	ID       string
	Type     MessageType
	Data     []byte
	Deadline time.Time
}

// Sentinel errors. Callers match them with errors.Is; wrapped errors carry
// the detail (never a key, signature or token). A *StatusError (the relay
// refused a connection or request, or did not answer in time) matches
// exactly one of the first six; a relay that could not be reached gives an
// error matching ErrUnreachable.
var (
	// ErrUnauthorized: the relay answered 401 (missing, malformed, expired
	// or badly signed token).
	ErrUnauthorized = errors.New("relay: unauthorized")
	// ErrForbidden: the relay answered 403 (token not valid for this entity
	// or action, or a quota).
	ErrForbidden = errors.New("relay: forbidden")
	// ErrEntityNotFound: the hybrid connection does not exist (404 to a
	// listen or to an HTTP request: "Endpoint does not exist").
	ErrEntityNotFound = errors.New("relay: hybrid connection does not exist")
	// ErrNoListener: no listener is connected (502 "could not be routed to
	// any listener" to an HTTP request, or 404 to a WebSocket connect).
	// The relay answers a connect with the same 404 "Endpoint does not
	// exist" when the hybrid connection itself is missing, so for a
	// connect this may also mean a wrong EntityPath. Retryable.
	ErrNoListener = errors.New("relay: no listener connected")
	// ErrServerError: the relay answered 5xx (other than 502 to an HTTP
	// request and 504) or an unexpected status.
	ErrServerError = errors.New("relay: relay error")
	// ErrTimeout: the relay did not answer in time (408/504, or a dial or
	// handshake deadline).
	ErrTimeout = errors.New("relay: timeout")
	// ErrUnreachable: the relay could not be reached (DNS, connection
	// refused or reset, TLS, or a connection closed before any answer).
	ErrUnreachable = errors.New("relay: relay unreachable")

	// ErrClosed: the pool or listener was closed.
	ErrClosed = errors.New("relay: closed")
	// ErrOverloaded: every pooled connection's send queue is full.
	ErrOverloaded = errors.New("relay: send queue full")
	// ErrUnavailable: no healthy pooled connection (for example no listener
	// is connected to the relay).
	ErrUnavailable = errors.New("relay: no healthy connection")
	// ErrConnLost: the connection carrying a message died before the
	// message was written.
	ErrConnLost = errors.New("relay: connection lost")
	// ErrPartialWrite: the connection failed while the message's frame was
	// being written, after some of it had reached the socket. The message
	// may or may not be delivered; the pool never retries it elsewhere
	// (at most once), and neither should the caller without an
	// idempotency check at the listener.
	ErrPartialWrite = errors.New("relay: connection lost mid-write; the message may have been delivered")
	// ErrMessageTooLarge is returned by Pool.Send for a message larger than
	// PoolConfig.MaxMessageBytes; nothing is sent.
	ErrMessageTooLarge = errors.New("relay: message too large")

	// Token errors, returned by ParseToken and Verifier.Verify.
	ErrTokenMalformed  = errors.New("relay: malformed SAS token")
	ErrTokenSignature  = errors.New("relay: SAS token has an invalid signature")
	ErrTokenExpired    = errors.New("relay: SAS token is expired")
	ErrTokenScope      = errors.New("relay: SAS token is not valid for this resource")
	ErrTokenUnknownKey = errors.New("relay: SAS token names an unknown key")

	// ErrInvalidCredentials is wrapped by every credential parsing error.
	ErrInvalidCredentials = errors.New("relay: invalid credentials")

	// ErrUnknownCommand is returned by DecodeControlMessage for a JSON object
	// whose single key is not a known command; listeners ignore such commands.
	ErrUnknownCommand = errors.New("relay: unknown control command")
	// ErrBadCommand is returned for control messages that are not a JSON
	// object with exactly one command or whose command is missing fields.
	ErrBadCommand = errors.New("relay: malformed control command")
)
