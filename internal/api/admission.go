package api

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// admission decides, before a send's body is read, whether the gateway
// takes it. It refuses a send when the request-body bytes already being
// handled exceed MaxInflightBytes, or when the wait they imply — those
// bytes divided by the rate at which the gateway relays — exceeds
// MaxWait. The first bound caps memory; the second keeps the latency of
// accepted requests near MaxWait whatever the relay's speed (a slow
// listener lowers the rate, so fewer bytes are let in). A send with
// nothing ahead of it is always admitted.
//
// The rate is bytes of sends completed as sent per second of busy time
// (time with any send in flight), so that idle spells and light load do
// not make it look slower than it is. It is sampled at most every
// rateInterval once minBusy of busy time has passed, and smoothed; it is
// unknown (no wait bound) until the first sample. While nothing goes out
// (a stalled listener) the samples are zero and the rate decays.
type admission struct {
	limit   int64         // MaxInflightBytes; 0: no byte bound
	maxWait time.Duration // MaxWait; 0: no wait bound
	now     func() time.Time

	inflight atomic.Int64  // body bytes of admitted sends not yet done
	sent     atomic.Int64  // body bytes of admitted sends done as sent
	rate     atomic.Uint64 // float64 bits: smoothed bytes/s; 0 unknown

	mu        sync.Mutex // guards the fields below
	busy      bool
	busySince time.Time
	busyTotal time.Duration // busy time up to busySince (or now, when idle)
	lastAt    time.Time     // wall time of the last sample
	lastBusy  time.Duration // busy time at the last sample
	lastSent  int64         // sent at the last sample
}

const (
	rateInterval = 100 * time.Millisecond
	minBusy      = 20 * time.Millisecond
	rateWeight   = 0.3 // weight of a new sample in the smoothed rate
)

// admit admits r's send, or refuses it with 503 overloaded before its body
// is read (see admission and shed). The send must end with
// s.admission.done.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (admitted, error) {
	ad, err := s.admission.admit(r, s.cfg.MaxBodyBytes)
	if err != nil {
		return ad, shed(w, r, err)
	}
	return ad, nil
}

// shedKeepAliveMax is the largest unread body a refused send leaves for
// net/http to read and discard (keeping the connection); a larger one is
// not read at all, and the connection is closed after the answer.
const shedKeepAliveMax = 16 << 10

// shed returns err, the 503 overloaded of a send refused before its body
// was read. Reading a large body only to throw it away would spend the
// CPU an overloaded gateway lacks, so such a connection is closed after
// the answer instead (net/http then leaves the body unread).
func shed(w http.ResponseWriter, r *http.Request, err error) error {
	if r.ContentLength < 0 || r.ContentLength > shedKeepAliveMax {
		w.Header().Set("Connection", "close")
	}
	return err
}

// admitted is an admitted send, to be passed to done.
type admitted struct{ cost int64 }

// admit counts r's body (its Content-Length, or maxBody when unknown)
// and admits it, or refuses it with 503 overloaded.
func (a *admission) admit(r *http.Request, maxBody int64) (admitted, error) {
	cost := maxBody
	if r.ContentLength >= 0 && r.ContentLength < cost {
		cost = max(r.ContentLength, 1)
	}
	n := a.inflight.Add(cost)
	ahead := n - cost
	if ahead == 0 {
		if a.maxWait > 0 {
			a.markBusy()
		}
		return admitted{cost}, nil
	}
	if a.limit > 0 && n > a.limit {
		a.inflight.Add(-cost)
		return admitted{}, newProblem(codeOverloaded, "the gateway is handling as many message bytes as it can; retry later")
	}
	if a.maxWait > 0 && a.wait(ahead) > a.maxWait {
		a.inflight.Add(-cost)
		return admitted{}, newProblem(codeOverloaded, "the messages ahead of this one would take longer than GATEWAY_MAX_WAIT to relay; retry later")
	}
	return admitted{cost}, nil
}

// wait is how long the bytes ahead take at the recent rate (0 when the
// rate is unknown).
func (a *admission) wait(ahead int64) time.Duration {
	r := math.Float64frombits(a.rate.Load())
	if r <= 0 {
		return 0
	}
	return time.Duration(float64(ahead) / r * float64(time.Second))
}

// done ends an admitted send; sent tells whether its message went out
// (only those count towards the rate: a refusal is fast but relays
// nothing).
func (a *admission) done(ad admitted, sent bool) {
	if ad.cost == 0 {
		return
	}
	if sent {
		a.sent.Add(ad.cost)
	}
	left := a.inflight.Add(-ad.cost)
	if a.maxWait <= 0 {
		return
	}
	if left == 0 {
		a.markIdle()
	}
	a.sample()
}

// markBusy starts a busy spell unless one is running.
func (a *admission) markBusy() {
	a.mu.Lock()
	if !a.busy {
		a.busy, a.busySince = true, a.now()
	}
	a.mu.Unlock()
}

// markIdle ends the busy spell, unless a send was admitted meanwhile.
func (a *admission) markIdle() {
	a.mu.Lock()
	if a.busy && a.inflight.Load() == 0 {
		a.busy = false
		a.busyTotal += a.now().Sub(a.busySince)
	}
	a.mu.Unlock()
}

// sample folds the bytes sent since the last sample, per second of busy
// time, into the rate: at most every rateInterval, and only once minBusy
// of busy time has accumulated.
func (a *admission) sample() {
	if !a.mu.TryLock() {
		return // another send is sampling, or a spell starts or ends
	}
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.lastAt) < rateInterval {
		return
	}
	busy := a.busyTotal
	if a.busy {
		busy += now.Sub(a.busySince)
	}
	db := busy - a.lastBusy
	if db < minBusy {
		return
	}
	sent := a.sent.Load()
	s := float64(sent-a.lastSent) / db.Seconds()
	a.lastAt, a.lastBusy, a.lastSent = now, busy, sent
	if r := math.Float64frombits(a.rate.Load()); r > 0 {
		s = r + rateWeight*(s-r)
	}
	a.rate.Store(math.Float64bits(s))
}

// shedLog sums up the sends answered 503 overloaded in one warning at
// most every second, instead of one per request.
type shedLog struct {
	n    atomic.Int64 // refusals not yet logged
	last atomic.Int64 // UnixNano of the last warning
}

// note counts one refusal and logs the count when a second has passed
// since the last warning (the first refusal is logged at once).
func (l *shedLog) note(ctx context.Context, log *slog.Logger) {
	l.n.Add(1)
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, "shedding load: sends answered 503 overloaded since the last such line (at most one a second)",
		slog.Int64("refused", l.n.Swap(0)))
}
