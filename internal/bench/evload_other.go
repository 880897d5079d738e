//go:build !linux

package bench

import "context"

// runOpenLoop runs the load child's open loop with a goroutine per worker
// (see the Linux version).
func runOpenLoop(ctx context.Context, spec LoadSpec, p *rawPoster, mark func()) (loadResult, error) {
	openLoop(ctx, spec.Rate, spec.Conc, spec.Warmup, p.do)
	mark()
	return openLoop(ctx, spec.Rate, spec.Conc, spec.Window, p.do), nil
}
