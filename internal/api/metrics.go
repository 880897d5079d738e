package api

import "time"

// Metrics receives the api's measurements. Implementations must be safe for
// concurrent use and fast; labels are routes, methods, statuses and codes,
// never ids or URLs.
type Metrics interface {
	// ObserveRequest records one finished request. route is the chi route
	// pattern ("/messages"), or "unmatched".
	ObserveRequest(route, method string, status int, d time.Duration)
	// Problem counts one problem response by code (the rejection reason).
	Problem(code string)
	// Relayed counts one message handed to the relay, by frame type
	// ("text", "binary") and delivery ("send", "request"), with its size.
	Relayed(frame, delivery string, bytes int)
}

// nopMetrics discards everything.
type nopMetrics struct{}

func (nopMetrics) ObserveRequest(string, string, int, time.Duration) {}
func (nopMetrics) Problem(string)                                    {}
func (nopMetrics) Relayed(string, string, int)                       {}
