//go:build !linux

package bench

import "time"

// newPacer paces with a Go timer (see the Linux version).
func newPacer(time.Duration) pacer { return newTimerPacer() }
