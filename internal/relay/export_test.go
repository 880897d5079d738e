package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// FromListener exposes fromListener to the tests.
var FromListener = fromListener

// Retryable reports whether trying again later may succeed (the
// classification the pool and listener apply, checked by the tests): true for 404 (no
// listener yet), 5xx and other unexpected statuses, timeouts and network
// errors; false for 401/403, invalid credentials, cancellation and nil.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var re *StatusError
	if errors.As(err, &re) {
		s := re.sentinel()
		return s != ErrUnauthorized && s != ErrForbidden
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrInvalidCredentials), errors.Is(err, ErrClosed):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed),
		errors.Is(err, ErrConnLost), errors.Is(err, ErrUnavailable), errors.Is(err, ErrOverloaded):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Signature returns the decoded signature, for tests that check it never
// leaks.
func (t *Token) Signature() string { return t.signature }
