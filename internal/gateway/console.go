package gateway

import (
	"github.com/relaygate/relaygate/internal/api"
	"github.com/relaygate/relaygate/internal/console"
)

// consoleHandlers builds the browser console for the api: the target, the
// pool's state and, in local mode, the feed the built-in listener
// publishes to (g.feed). Call it after g.pool is set.
func (g *Gateway) consoleHandlers() api.ConsoleHandlers {
	cfg := console.Config{
		Target: console.Target{
			Mode:      console.ModeOf(g.emu != nil, g.creds),
			Namespace: g.creds.Host,
			Entity:    g.creds.EntityPath,
		},
		Feed:         g.feed,
		MaxBodyBytes: g.cfg.MaxBodyBytes,
	}
	if g.pool != nil { // a nil *relay.Pool must not become a non-nil interface
		cfg.Pool = g.pool
	}
	c := console.New(cfg)
	return api.ConsoleHandlers{Page: c.Page(), Status: c.Status(), Events: c.Events()}
}
