//go:build !unix

package bench

import "time"

// selfCPU is 0 where getrusage is missing; the separate-process section
// needs Linux anyway.
func selfCPU() time.Duration { return 0 }
