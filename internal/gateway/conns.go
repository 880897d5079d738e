package gateway

import (
	"net/http"
	"time"

	"github.com/relaygate/relaygate/internal/conntrack"
)

// unusedConnGrace is how long connections that have not sent a request
// yet are left open once shutdown has started.
const unusedConnGrace = time.Second

// trackNewConns closes srv's connections that have not sent a request yet
// grace after shutdown starts: browsers (the console, for one) open such
// sockets speculatively, and each would hold up a shutdown for 5 s.
func trackNewConns(srv *http.Server, grace time.Duration) {
	conntrack.CloseNewOnShutdown(srv, grace)
}
