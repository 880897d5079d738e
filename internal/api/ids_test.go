package api

import (
	"regexp"
	"sync"
	"testing"
)

// TestNewIDUnique: ids are version 4 UUIDs and differ, also across refills
// of the random buffer and from several goroutines.
func TestNewIDUnique(t *testing.T) {
	t.Parallel()
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	const workers, each = 4, 500
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], newID())
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, list := range ids {
		for _, id := range list {
			if !uuid4.MatchString(id) {
				t.Fatalf("%q is not a version 4 UUID", id)
			}
			if seen[id] {
				t.Fatalf("%q generated twice", id)
			}
			seen[id] = true
		}
	}
}
