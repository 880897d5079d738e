package api

import "strconv"

// parseSeconds parses a whole number of seconds written as plain ASCII
// digits: strconv.ParseInt alone would also accept "+60".
func parseSeconds(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
