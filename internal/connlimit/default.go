package connlimit

// Reserve is how many file descriptors DefaultMax leaves for everything but
// client connections: the relay pool, the admin listener, log files, DNS.
const Reserve = 64

// minMax is the smallest default cap, for tiny fd limits.
const minMax = 16

// DefaultMax derives a connection cap from the soft RLIMIT_NOFILE: 80 % of
// it minus Reserve, at least 16. Without a readable limit it assumes 1024.
func DefaultMax() int {
	return maxFor(fdLimit())
}

func maxFor(limit uint64) int {
	if limit == 0 {
		limit = 1024
	}
	n := int(min(limit, 1<<30)*8/10) - Reserve
	return max(n, minMax)
}
