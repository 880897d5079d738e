package api

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/relaygate/relaygate/internal/relay"
)

// Relayer sends one message as one WebSocket frame through the relay. The
// ctx and m.Deadline (the send timeout, when not zero) bound only the wait
// (queueing, finding a healthy connection); ctx must not reach a pooled
// connection. A deadline that passes before the write began gives
// context.DeadlineExceeded, as a ctx deadline would. Errors wrap relay's
// sentinels (relay.ErrUnavailable, ErrOverloaded, ErrClosed,
// ErrUnauthorized, ...). Send must not hold m.Data after it returns: the
// api reuses the buffer. *relay.Pool implements it. Implementations must
// be safe for concurrent use.
type Relayer interface {
	Send(ctx context.Context, m relay.Message) error
}

// ReadinessChecker is an optional interface of a Relayer: Ready reports
// whether at least one healthy connection is up and, if not, why.
type ReadinessChecker interface {
	Ready() (bool, string)
}

// ListenerRequest is what POST /messages?delivery=request sends to the
// listener through the relay's HTTP request mode: a POST with Body and
// ContentType.
type ListenerRequest struct {
	ID          string
	RequestID   string
	ContentType string
	Body        []byte
}

// ListenerResponse is the listener's answer, as relayed.
type ListenerResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// Requester delivers one request to the listener through the relay's HTTP
// request mode. It returns a ListenerResponse only for an answer that came
// from the listener (whatever its status); errors of the relay itself wrap
// relay's sentinels (relay.ErrNoListener for "no listener", ErrTimeout, ...).
// Implementations must be safe for concurrent use.
type Requester interface {
	Request(ctx context.Context, req ListenerRequest) (*ListenerResponse, error)
}

// Config is the api's share of the gateway configuration.
type Config struct {
	// Credentials of the hybrid connection, for GET /token.
	Credentials relay.Credentials
	// MaxBodyBytes limits request bodies (413 above it) and the listener
	// response bodies relayed by ?delivery=request. Default 1 MiB.
	MaxBodyBytes int64
	// MaxBatch caps the messages of one POST /messages:batch (400 above
	// it); the body limit applies too. Default 1000 (GATEWAY_MAX_BATCH).
	MaxBatch int
	// SendTimeout bounds a POST /messages (or a whole batch) from decoding
	// to the last frame being written. Default 10s.
	SendTimeout time.Duration
	// DeliveryTimeout bounds a ?delivery=request round trip. Default 30s.
	DeliveryTimeout time.Duration
	// RetryAfter is the hint sent with every 503. Default 1s.
	RetryAfter time.Duration
	// TokenTTL is GET /token's default lifetime (1h); TokenMaxTTL caps it (24h).
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	// APIKeys, if any, are required on /messages and /token.
	APIKeys []string
	// CORSOrigins are the browser origins allowed to call the API ("*" for any).
	// Requests with another Origin that change state or ask for a token
	// get 403 origin_not_allowed (see hostcheck.go).
	CORSOrigins []string
	// ListenAddr is the address the gateway binds (host:port). Its host is
	// an allowed Host header value; an unspecified host (":8080",
	// "0.0.0.0:8080") allows any IP literal.
	ListenAddr string
	// AllowedHosts are further Host header values the gateway answers to,
	// besides localhost, 127.0.0.1, [::1] and ListenAddr's host: a name
	// ("gw.example", any port), a name with port ("gw.example:8443"),
	// "*.example.com" for subdomains, or "*" for any Host. Other Hosts get
	// 421 host_not_allowed (but /healthz and /readyz).
	AllowedHosts []string
	// Console, if set, is the browser console (package console).
	Console ConsoleHandlers
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// MaxInflightBytes bounds the request-body bytes (Content-Length, or
	// MaxBodyBytes when unknown) of the POST /messages sends being handled
	// at once: above it a send gets 503 overloaded with Retry-After before
	// its body is read. With the pool's queue caps it keeps the latency of
	// accepted requests bounded under overload. 0: no bound.
	MaxInflightBytes int64
	// MaxWait bounds the expected wait of a send: the bytes of the sends
	// already being handled divided by the rate the gateway has recently
	// relayed at (per second of busy time). Above it a send gets 503
	// overloaded with Retry-After before its body is read, so accepted
	// requests keep a latency near MaxWait even when the relay or the
	// listener slows down. 0: no bound.
	MaxWait time.Duration
	// RequestOnly makes HTTP request mode the default of POST /messages
	// and refuses ?delivery=send with 400 (GATEWAY_MODE=request, for
	// listeners that serve no WebSockets; see RequestOnly).
	RequestOnly bool
	// TracerProvider, if set, records a server span per request (see
	// traceRequests); nil records none but still passes trace context on.
	TracerProvider trace.TracerProvider
	// EnvelopeTraceparent adds "traceparent" to the {"id","message"}
	// envelope of JSON messages sent over WebSockets (off: listeners see
	// the envelope unchanged).
	EnvelopeTraceparent bool
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
	if c.TokenMaxTTL <= 0 {
		c.TokenMaxTTL = 24 * time.Hour
	}
	if c.TokenTTL > c.TokenMaxTTL {
		c.TokenTTL = c.TokenMaxTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ConsoleHandlers are the browser console's handlers; nil ones are not
// mounted. Page serves GET /, /console/console.js and /console/console.css;
// Status (GET /console/status) and Events (GET /console/events, a
// server-sent-events stream) sit behind the API keys.
type ConsoleHandlers struct {
	Page, Status, Events http.Handler
}

// Server serves the REST surface. It is safe for concurrent use; Drain may
// be called from any goroutine.
type Server struct {
	// Static after construction.
	cfg       Config
	relayer   Relayer
	requester Requester
	log       *slog.Logger
	metrics   Metrics
	keys      [][32]byte // sha256 of each API key
	origins   map[string]bool
	anyOrigin bool
	hosts     *hostPolicy

	draining  atomic.Bool
	admission admission // MaxInflightBytes and MaxWait
	sheds     shedLog   // the once-a-second summary of 503 overloaded
}

// New returns a Server. rq may be nil, in which case ?delivery=request
// answers 503. m may be nil (nopMetrics).
func New(cfg Config, rl Relayer, rq Requester, log *slog.Logger, m Metrics) *Server {
	cfg.setDefaults()
	if m == nil {
		m = nopMetrics{}
	}
	s := &Server{
		cfg:       cfg,
		relayer:   rl,
		requester: rq,
		log:       log,
		metrics:   m,
		origins:   map[string]bool{},
		hosts:     newHostPolicy(cfg.ListenAddr, cfg.AllowedHosts),
	}
	s.admission.limit, s.admission.maxWait, s.admission.now = cfg.MaxInflightBytes, cfg.MaxWait, time.Now
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, hashKey(k))
	}
	for _, o := range cfg.CORSOrigins {
		if o == "*" {
			s.anyOrigin = true
		}
		s.origins[o] = true
	}
	return s
}

// Drain marks the server as shutting down: /readyz answers 503 at once
// (so load balancers stop routing to it), while every other request is
// still served normally, its response carrying "Connection: close" so
// that clients move their keep-alive connections elsewhere before the
// listening socket closes. Drain is idempotent.
func (s *Server) Drain() { s.draining.Store(true) }

// isDraining reports whether Drain was called.
func (s *Server) isDraining() bool { return s.draining.Load() }

// HTTPServer returns an http.Server for h with every timeout set.
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	longest := max(s.cfg.SendTimeout, s.cfg.DeliveryTimeout)
	return &http.Server{
		Handler: h,
		// Slow-loris guard: headers are small and sent at once.
		ReadHeaderTimeout: 5 * time.Second,
		// Whole request including a MaxBodyBytes body; generous for slow
		// uplinks, bounded so a stalled upload cannot pin a goroutine.
		ReadTimeout: 30 * time.Second,
		// Must outlast the longest handler (the relay deadlines) plus reading
		// the body, or a slow relay answer would be cut off mid-response.
		WriteTimeout: 30*time.Second + longest + 5*time.Second,
		// Keep-alive connections are cheap but not free.
		IdleTimeout: 60 * time.Second,
		// Our headers are small; 64 KiB is plenty for tokens and keys.
		MaxHeaderBytes: 64 << 10,
		// "OPTIONS *" reaches the router (a 404 problem) instead of
		// net/http's bare 200; the one such answer net/http lets us own.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}
