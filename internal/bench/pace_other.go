//go:build !linux

package bench

import (
	"context"
	"time"
)

// newPacer paces with a Go timer (see the Linux version).
func newPacer(ctx context.Context, _ time.Duration) pacer { return newTimerPacer(ctx) }
