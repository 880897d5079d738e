package metrics

import (
	"sync"
	"sync/atomic"
)

// seriesCache maps a bounded set of label values to collectors resolved
// once, so that the per-request path is one map lookup instead of
// prometheus's label hashing, validation and locking (WithLabelValues).
// Reads take no lock: the map is replaced, never written, when a new key
// arrives, which stops happening once every route, method and status has
// been seen. Keys must come from fixed sets (see labels.go).
type seriesCache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serializes stores
}

// load returns the value for k, if stored.
func (c *seriesCache[K, V]) load(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// store adds v for k unless another goroutine stored one first, and
// returns the stored value.
func (c *seriesCache[K, V]) store(k K, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if prev, ok := (*old)[k]; ok {
			return prev
		}
	}
	next := make(map[K]V, 1)
	if old != nil {
		next = make(map[K]V, len(*old)+1)
		for ok, ov := range *old {
			next[ok] = ov
		}
	}
	next[k] = v
	c.m.Store(&next)
	return v
}
