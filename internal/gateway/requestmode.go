package gateway

import (
	"context"

	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/console"
)

// startRequestOnly sets up a request-only gateway (GATEWAY_MODE=request):
// no sender WebSocket is dialled, and every POST /messages is an HTTP
// request to the listener through rq. /readyz reports whether the newest
// request (or a probe it starts when that is older than api.ProbeInterval)
// reached a listener.
func (g *Gateway) startRequestOnly(rq *api.RelayRequester) api.Relayer {
	g.reqOnly = api.NewRequestOnly(rq, rq, g.log.With("component", "requestmode"), nil)
	return g.reqOnly
}

// requester is what ?delivery=request goes through: rq itself, or, in
// request-only mode, the RequestOnly wrapping it (which records outcomes
// for /readyz).
func (g *Gateway) requester(rq *api.RelayRequester) api.Requester {
	if g.reqOnly != nil {
		return g.reqOnly
	}
	return rq
}

// waitReady waits until the pool has a connection or, in request-only
// mode, a listener answered a probe.
func (g *Gateway) waitReady(ctx context.Context) error {
	if g.reqOnly != nil {
		return g.reqOnly.WaitReady(ctx)
	}
	return g.pool.WaitReady(ctx)
}

// poolStatser is the pool for the console, or nil in request-only mode
// (a nil *relay.Pool in the interface would not be nil).
func (g *Gateway) poolStatser() console.PoolStatser {
	if g.pool == nil {
		return nil
	}
	return g.pool
}
