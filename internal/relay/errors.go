package relay

import "errors"

// Sentinel errors. Callers match them with errors.Is; wrapped errors carry
// the detail (never a key, signature or token).
var (
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
