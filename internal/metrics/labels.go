package metrics

import "strconv"

// Label values that come from the network are bounded to fixed sets here,
// so no client can add series: /metrics would otherwise grow with every
// invented method (issue 12, item 1).

// methodLabel returns m if it is a standard method, else "OTHER". A
// switch, not a map: it runs for every request.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// statusKey is code if statusLabel keeps it, else 0 (also "other"), so
// that cached series stay a bounded set.
func statusKey(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code
}

// statusLabel returns the status code as a label: a three-digit code from
// 100 to 599, else "other".
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// closeCodeLabel returns a WebSocket close code as a label: the codes of
// RFC 6455 §7.4.1 (1000-1015) as numbers, any other (application codes the
// relay might send) as "other".
func closeCodeLabel(code int) string {
	if code < 1000 || code > 1015 {
		return "other"
	}
	return strconv.Itoa(code)
}
