package relay

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/coder/websocket"
)

// TokenPlacement says where a client puts its SAS token
// (docs/hybrid-connections.md §2.3, §4.1): in the ServiceBusAuthorization
// header, which every official client uses, or in the sb-hc-token query
// parameter, which some relay implementations require.
type TokenPlacement string

// Token placements. The zero value means TokenInHeader.
const (
	// TokenInHeader sends the token in the ServiceBusAuthorization header.
	TokenInHeader TokenPlacement = "header"
	// TokenInQuery sends the token in the sb-hc-token query parameter. The
	// URL then carries a secret: errors and logs show it as REDACTED.
	TokenInQuery TokenPlacement = "query"
	// TokenAuto sends the token in the header first and, when the relay
	// answers 401, once more in the query. A client that keeps state (Pool,
	// Listener, HTTPSender) remembers a success in the query and uses the
	// query from then on.
	TokenAuto TokenPlacement = "auto"
)

// Validate reports whether p is one of the placements or "".
func (p TokenPlacement) Validate() error {
	switch p {
	case "", TokenInHeader, TokenInQuery, TokenAuto:
		return nil
	}
	return fmt.Errorf("relay: token placement %q: must be header, query or auto", string(p))
}

// tokenPlacer decides, dial by dial, whether the token goes in the query.
// It is safe for concurrent use; the zero value places it in the header.
type tokenPlacer struct {
	// Static after construction.
	p TokenPlacement
	// inQuery is set once TokenAuto has seen the query form succeed
	// where the header form got 401.
	inQuery atomic.Bool
}

// queryFirst reports whether the next attempt puts the token in the query.
func (t *tokenPlacer) queryFirst() bool {
	return t.p == TokenInQuery || t.inQuery.Load()
}

// do calls attempt with the placement to use and, under TokenAuto, once
// more with the token in the query when the header form was refused with
// 401. It returns the last attempt's error.
func (t *tokenPlacer) do(attempt func(inQuery bool) error) error {
	q := t.queryFirst()
	err := attempt(q)
	if q || t.p != TokenAuto || !errors.Is(err, ErrUnauthorized) {
		return err
	}
	err = attempt(true)
	t.learn(err == nil || !errors.Is(err, ErrUnauthorized))
	return err
}

// learn records that the query form worked (TokenAuto only).
func (t *tokenPlacer) learn(ok bool) {
	if ok && t.p == TokenAuto {
		t.inQuery.Store(true)
	}
}

// placement returns where o puts the token: TokenInQuery wins over
// TokenPlacement.
func (o DialOptions) placement() TokenPlacement {
	if o.TokenInQuery {
		return TokenInQuery
	}
	return o.TokenPlacement
}

// dialPlaced dials a sender connection with the token where pl says.
func dialPlaced(ctx context.Context, c Credentials, o DialOptions, pl *tokenPlacer) (*websocket.Conn, error) {
	if err := o.TokenPlacement.Validate(); err != nil {
		return nil, err
	}
	var ws *websocket.Conn
	err := pl.do(func(inQuery bool) error {
		o.TokenInQuery = inQuery
		var err error
		ws, _, err = dialWS(ctx, c, ActionConnect, o)
		return err
	})
	return ws, err
}
