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
		Pool:         g.poolStatser(),
		Feed:         g.feed,
		MaxBodyBytes: g.cfg.MaxBodyBytes,
		Delivery:     g.cfg.Mode,
	}
	c := console.New(cfg)
	return api.ConsoleHandlers{Page: c.Page(), Status: c.Status(), Events: c.Events()}
}
