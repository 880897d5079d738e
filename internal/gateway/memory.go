package gateway

import (
	"context"
	"runtime/debug"
	"time"
)

// GCPercent is the garbage collector's target percentage (GOGC) the gateway
// runs with when the GOGC variable is not set and a soft memory limit
// applies (see TuneGC).
const GCPercent = 400

// TuneGC sets the garbage collector's target percentage to GCPercent when
// gogc, the value of the GOGC variable, is empty and limit, the soft
// memory limit in effect (memlimit.Decision.Limit), is positive; it
// reports whether it did. An explicit GOGC wins, and without a limit the
// runtime's default (100) stays, so that the heap is never left to grow
// to five times the live heap unbounded.
//
// Why: under load the gateway's live heap is about 2 MiB (connection
// buffers, the pool), while each request allocates about 4 KiB, most of
// it in net/http. With GOGC=100 the heap goal is the runtime's 4 MiB
// minimum and a collection runs every 0.1 s at 4,000 requests/s; at 400
// the goal is 16 MiB and collections run a quarter as often (issue 14:
// CPU per message). The soft limit (48 MiB by default, GATEWAY_MEMORY_LIMIT)
// still bounds the heap: with 1,000 clients the live heap is tens of MiB,
// and it is the limit, not GOGC, that sets the goal there.
func TuneGC(gogc string, limit int64) bool {
	if gogc != "" || limit <= 0 {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}

// releaseStartupMemory returns the heap freed since start-up (the
// configuration, the router, the pool's dials) to the OS once every
// connection of the pool is ready, instead of leaving it to the background
// scavenger, which kept about 20 KiB of RSS per idle pooled connection
// resident in the benchmark (issue 14). It waits for all of them, not the
// first: the dials still under way when the first connection is ready
// would keep their garbage resident (idle RSS per pooled connection
// 41–46 KiB that way, 32–34 KiB waiting for all). It costs one GC, once.
// It returns when the pool is ready, closes or is not wholly ready within
// a minute (then it releases what it can if some connection is ready).
func (g *Gateway) releaseStartupMemory() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := g.pool.WaitAllReady(ctx)
	if err == nil || ctx.Err() != nil && g.pool.Stats().Ready > 0 {
		debug.FreeOSMemory()
	}
}
