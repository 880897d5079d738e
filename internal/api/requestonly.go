package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// Request-only readiness (GATEWAY_MODE=request).
const (
	// ProbeInterval is how old the newest request-mode outcome may be
	// before /readyz starts a probe.
	ProbeInterval = 10 * time.Second
	// RetryProbeInterval replaces ProbeInterval while not ready, so that
	// readiness returns soon after a listener connects.
	RetryProbeInterval = time.Second
	// probeTimeout bounds one probe.
	probeTimeout = 10 * time.Second
	// HeaderProbe marks a readiness probe, so a listener can tell it from
	// a message (and answer it cheaply).
	HeaderProbe = "Relaygate-Probe"
)

// ErrRequestOnly is what RequestOnly.Send returns: a request-only gateway
// has no sender WebSocket to send a frame on.
var ErrRequestOnly = errors.New("api: this gateway delivers in HTTP request mode only")

// Prober checks that a listener answers in HTTP request mode: nil when a
// listener answered (whatever its status), otherwise an error wrapping
// relay's sentinels, like Requester's. *RelayRequester implements it.
type Prober interface {
	Probe(ctx context.Context) error
}

// RequestOnly is the Relayer, Requester and ReadinessChecker of a
// request-only gateway (Config.RequestOnly), for listeners that serve only
// HTTP request mode, such as Microsoft's hyco-https, which crashes on a
// WebSocket accept (docs/hybrid-connections.md §11.2). It dials nothing
// itself: every message is a request through rq.
//
// Readiness is the outcome of the newest request-mode round trip, a POST
// /messages or a probe: ready when a listener answered, whatever its
// status; not ready when the relay had no listener, refused the
// credentials, could not be reached or did not answer in time. When that
// outcome is older than ProbeInterval (RetryProbeInterval while not
// ready), or there is none yet, Ready starts
// one probe in the background and answers with what it knew, so /readyz
// never waits for the relay and an idle gateway sends no probe unless
// something asks /readyz.
//
// All methods are safe for concurrent use. Close stops a running probe.
type RequestOnly struct {
	// Static after construction.
	rq     Requester
	probe  Prober
	log    *slog.Logger
	now    func() time.Time
	ctx    context.Context // cancelled by Close; parent of probes
	cancel context.CancelFunc
	wg     sync.WaitGroup // running probe

	// Guarded by mu.
	mu      sync.Mutex
	at      time.Time // when the newest outcome was recorded; zero: none yet
	reason  string    // why not ready; "" when ready
	probing bool
	changed chan struct{} // closed and replaced on every recorded outcome
}

// NewRequestOnly returns a RequestOnly delivering through rq and probing
// through p. log may be nil; now nil means time.Now.
func NewRequestOnly(rq Requester, p Prober, log *slog.Logger, now func() time.Time) *RequestOnly {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RequestOnly{rq: rq, probe: p, log: log, now: now, ctx: ctx, cancel: cancel,
		reason: "request mode: checking the listener", changed: make(chan struct{})}
}

// Send returns an error matching relay.ErrUnavailable and ErrRequestOnly:
// the api delivers every message of a request-only gateway through
// Request, so it is never called there.
func (r *RequestOnly) Send(ctx context.Context, m relay.Message) error {
	return fmt.Errorf("%w: %w", relay.ErrUnavailable, ErrRequestOnly)
}

// Request delivers req through the Requester and records the outcome for
// Ready, unless the client gave up first (ctx cancelled), which says
// nothing about the relay.
func (r *RequestOnly) Request(ctx context.Context, req ListenerRequest) (*ListenerResponse, error) {
	resp, err := r.rq.Request(ctx, req)
	if err == nil || !errors.Is(ctx.Err(), context.Canceled) {
		r.record(err)
	}
	return resp, err
}

// Ready reports whether the newest request-mode round trip reached a
// listener and, if not, why. It starts a probe when that outcome is stale.
func (r *RequestOnly) Ready() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stale := ProbeInterval
	if r.reason != "" {
		stale = RetryProbeInterval
	}
	if !r.probing && r.ctx.Err() == nil && (r.at.IsZero() || r.now().Sub(r.at) >= stale) {
		r.probing = true
		r.wg.Go(r.runProbe)
	}
	return r.reason == "", r.reason
}

// WaitReady probes, every RetryProbeInterval, until a listener answers or
// ctx ends (ctx.Err()).
func (r *RequestOnly) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(RetryProbeInterval)
	defer tick.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if ok, _ := r.Ready(); ok {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops a running probe and waits for it; Ready starts no more.
func (r *RequestOnly) Close() {
	// Under mu, so that Ready cannot start a probe after the Wait began.
	r.mu.Lock()
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
}

// runProbe probes once and records the outcome.
func (r *RequestOnly) runProbe() {
	ctx, cancel := context.WithTimeout(r.ctx, probeTimeout)
	defer cancel()
	err := r.probe.Probe(ctx)
	r.mu.Lock()
	r.probing = false
	r.mu.Unlock()
	if r.ctx.Err() == nil {
		r.record(err)
	}
}

// record stores the outcome of a round trip.
func (r *RequestOnly) record(err error) {
	reason := notReadyReason(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason != r.reason {
		if reason == "" {
			r.log.Info("request mode: listener reachable")
		} else {
			r.log.Warn("request mode: listener not reachable", "reason", reason)
		}
	}
	r.at, r.reason = r.now(), reason
	close(r.changed)
	r.changed = make(chan struct{})
}

// notReadyReason is "" when err shows a listener answered, else why not.
func notReadyReason(err error) string {
	switch {
	case err == nil, errors.Is(err, ErrListenerBodyTooLarge):
		return ""
	case errors.Is(err, relay.ErrNoListener):
		return "request mode: no listener connected"
	case errors.Is(err, relay.ErrEntityNotFound):
		return "request mode: the hybrid connection does not exist (check the EntityPath)"
	case errors.Is(err, relay.ErrUnauthorized), errors.Is(err, relay.ErrForbidden):
		return "request mode: relay refused credentials"
	case errors.Is(err, relay.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "request mode: the relay or listener did not answer in time"
	}
	return "request mode: relay unreachable"
}

// Probe sends OPTIONS with the HeaderProbe header to the listener: nil
// when a listener answered (any status), else an error wrapping relay's
// sentinels. The request carries a small text/plain body ("readyz"):
// Microsoft's hyco-https 1.4.5 never answers a request without a body.
func (q *RelayRequester) Probe(ctx context.Context) error {
	h := http.Header{}
	h.Set(HeaderProbe, "readyz")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := q.Doer.Send(ctx, http.MethodOptions, "", nil, h, strings.NewReader("readyz"))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.Body.Close()
}
