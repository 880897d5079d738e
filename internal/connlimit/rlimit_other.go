//go:build !unix

package connlimit

// fdLimit is unknown off Unix.
func fdLimit() uint64 { return 0 }
