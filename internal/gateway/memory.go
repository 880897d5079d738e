package gateway

import (
	"context"
	"runtime/debug"
	"time"
)

// releaseStartupMemory returns the heap freed since start-up (the
// configuration, the router, the pool's dials) to the OS once the pool
// has a ready connection, instead of leaving it to the background
// scavenger, which kept about 20 KiB of RSS per idle pooled connection
// resident in the benchmark (issue 14). It costs one GC, once. It returns
// when the pool is ready, closes or does not get ready within a minute.
func (g *Gateway) releaseStartupMemory() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if g.pool.WaitReady(ctx) == nil {
		debug.FreeOSMemory()
	}
}
