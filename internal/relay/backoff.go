package relay

import (
	"math/rand/v2"
	"time"
)

// defaultBackoff is the reconnect schedule of Microsoft's clients: retry
// after 0, 1, 2, 5, 10 and then every 30 seconds.
var defaultBackoff = []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}

// backoff walks a schedule of delays, staying on the last one, with up to
// ±20% jitter on every non-zero step so that many clients that lost the relay
// together do not reconnect in lockstep. Reset returns to the first step once
// a connection has run healthy. A backoff is owned by one goroutine.
type backoff struct {
	steps []time.Duration
	n     int
}

func newBackoff(steps []time.Duration) *backoff {
	if len(steps) == 0 {
		steps = defaultBackoff
	}
	return &backoff{steps: steps}
}

// Next returns the delay before the next attempt and advances.
func (b *backoff) Next() time.Duration {
	d := b.steps[min(b.n, len(b.steps)-1)]
	b.n++
	if d <= 0 {
		return 0
	}
	j := time.Duration(rand.Int64N(int64(d)/5 + 1))
	if rand.IntN(2) == 0 {
		return d - j
	}
	return d + j
}

// Reset starts the schedule over.
func (b *backoff) Reset() { b.n = 0 }

// Attempts reports how many delays Next has returned since the last Reset.
func (b *backoff) Attempts() int { return b.n }
