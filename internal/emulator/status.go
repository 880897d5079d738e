package emulator

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// wireError is an error the emulator reports to a client the way the service
// does: a status code and a reason phrase ("Endpoint does not exist."), to
// which writeStatus appends TrackingId, SystemTracker and Timestamp.
type wireError struct {
	code   int
	text   string // reason phrase without the tracking suffix; safe to show
	reason string // metrics label; "" is not counted
	err    error  // cause, for the log only; may be nil; never holds secrets
	// verbatim sends text without the tracking suffix (a listener's own
	// reject description).
	verbatim bool
}

func (e *wireError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.code, e.text, e.err)
	}
	return fmt.Sprintf("%d %s", e.code, e.text)
}

func (e *wireError) Unwrap() error { return e.err }

func errNotFound(cause error) *wireError {
	return &wireError{code: http.StatusNotFound, text: "Endpoint does not exist.", reason: "not_found", err: cause}
}

// trackingSuffix formats the service's tracking tail for entityPath on host.
func trackingSuffix(host, entityPath string, now time.Time) string {
	return fmt.Sprintf("TrackingId:%s_G0, SystemTracker:sb://%s/%s, Timestamp:%s",
		uuid.NewString(), host, entityPath, now.UTC().Format("2006-01-02T15:04:05"))
}

// maxReason bounds reason phrases; longer descriptions are cut.
const maxReason = 1024

// sanitizeReason makes s safe for a status line: control characters become
// spaces, and it is cut to maxReason bytes.
func sanitizeReason(s string) string {
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// sanitizeHost keeps a Host header safe to echo into a reason phrase.
func sanitizeHost(h string) string {
	if len(h) > 256 {
		h = h[:256]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == ',' {
			return -1
		}
		return r
	}, h)
}

// rawResponse is a response written on a hijacked connection, so that the
// reason phrase is ours (net/http always writes the standard text).
type rawResponse struct {
	code   int
	reason string
	header http.Header
	body   []byte
}

// writeRaw writes resp on bw, which belongs to a hijacked connection, and
// flushes it. Transfer framing comes from len(resp.body) and the connection
// is announced as closing.
func writeRaw(bw *bufio.Writer, resp rawResponse) error {
	reason := sanitizeReason(resp.reason)
	if reason == "" {
		reason = http.StatusText(resp.code)
	}
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", resp.code, reason)
	h := resp.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	if bodyAllowed(resp.code) {
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	if err := h.Write(bw); err != nil {
		return err
	}
	bw.WriteString("\r\n")
	if bodyAllowed(resp.code) {
		bw.Write(resp.body)
	}
	return bw.Flush()
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// writeStatus answers r with e as the service would: the status line's
// reason phrase is e.text plus the tracking suffix, and the body repeats it.
// The connection is hijacked (when possible) and closed. writeStatus is
// called at most once per request, by the request's handler goroutine.
func (s *Server) writeStatus(w http.ResponseWriter, r *http.Request, entityPath string, e *wireError) {
	host := sanitizeHost(r.Host)
	if entityPath == "" {
		entityPath = "-"
	}
	reason := sanitizeReason(e.text + " " + trackingSuffix(host, sanitizeHost(entityPath), time.Now()))
	if e.verbatim {
		reason = sanitizeReason(e.text)
	}
	if e.reason != "" {
		s.m.Rejected(e.reason)
	}
	s.writeResponse(w, r, rawResponse{
		code:   e.code,
		reason: reason,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   []byte(reason + "\n"),
	})
}

// writeResponse writes resp on r's hijacked connection and closes it. A
// small unread request body is drained first so that closing does not reset
// the connection before the client reads the response. Without a hijackable
// connection (HTTP/2, httptest.ResponseRecorder) it falls back to net/http,
// which uses the standard reason phrase.
func (s *Server) writeResponse(w http.ResponseWriter, r *http.Request, resp rawResponse) {
	if r.Body != nil && r.ContentLength != 0 {
		io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		for k, v := range resp.header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.code)
		w.Write(resp.body)
		return
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
	if err := writeRaw(brw.Writer, resp); err != nil {
		s.log.Debug("write status line", slog.Int("status", resp.code), slog.Any("err", err))
	}
}

const (
	// drainLimit bounds how much of an unread request body is discarded
	// before an error response.
	drainLimit = 256 << 10
	// statusWriteTimeout bounds writing an error response.
	statusWriteTimeout = 5 * time.Second
)

// logLimiter lets at most burst log lines through per period and counts the
// rest, so a client reconnecting in a tight loop with a bad token cannot
// flood the log. It is safe for concurrent use.
type logLimiter struct {
	period time.Duration
	burst  int

	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be logged now, and how many lines were
// suppressed since the last allowed one.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.period {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
