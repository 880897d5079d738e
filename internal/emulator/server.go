package emulator

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaygate/relaygate/internal/conntrack"
	"github.com/relaygate/relaygate/internal/relay"
)

// Defaults for zero Config fields.
const (
	DefaultTokenGrace      = 60 * time.Second
	DefaultAcceptTimeout   = 30 * time.Second
	DefaultRequestTimeout  = 60 * time.Second
	DefaultMaxListeners    = 25
	DefaultMaxMessageBytes = 16 << 20
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the TCP listen address; "127.0.0.1:0" picks a free port.
	Addr string
	// Rules are the SAS rules tokens are checked against.
	Rules []Rule
	// Entities are the declared hybrid connections.
	Entities []Entity
	// AutoCreate creates an entity (named by the first path segment, with
	// client authorization required) on its first authorized use. Without
	// it, unknown entities are 404.
	AutoCreate bool
	// TokenGrace is how long after its token expires an unrenewed control
	// channel stays open before it is closed with 1008. Microsoft's clients
	// renew at about the moment of expiry, so a grace avoids flapping.
	TokenGrace time.Duration
	// AcceptTimeout is how long accept and request rendezvous addresses are
	// valid and how long a sender waits for the listener to accept.
	AcceptTimeout time.Duration
	// RequestTimeout is how long an HTTP request-mode sender waits for the
	// listener's response before getting 504.
	RequestTimeout time.Duration
	// MaxListeners caps control channels per hybrid connection (the service
	// allows 25); the next one gets 403.
	MaxListeners int
	// MaxMessageBytes is the largest WebSocket message accepted on a relayed
	// connection or request rendezvous, and the largest HTTP body in request
	// mode. Relayed messages are streamed frame by frame, so memory per
	// connection stays at a few buffers regardless of this limit; it exists
	// so one peer cannot make the other buffer without bound. Default 16 MiB.
	MaxMessageBytes int64
	// TLS, if set, serves wss:// and https://.
	TLS *TLSConfig
	// QueryTokenOnly makes the emulator behave like relay implementations
	// that read the SAS token only from the sb-hc-token query parameter:
	// a token in the ServiceBusAuthorization (or Authorization) header is
	// ignored, so such clients get 401 MissingToken.
	QueryTokenOnly bool
	// Entra, if set, also accepts Microsoft Entra ID-style JWTs (entra.go).
	Entra *EntraConfig
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.TokenGrace == 0 {
		c.TokenGrace = DefaultTokenGrace
	}
	if c.AcceptTimeout == 0 {
		c.AcceptTimeout = DefaultAcceptTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxListeners == 0 {
		c.MaxListeners = DefaultMaxListeners
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.TokenGrace < 0 || c.AcceptTimeout < 0 || c.RequestTimeout < 0 {
		errs = append(errs, errors.New("emulator: timeouts must not be negative"))
	}
	if c.MaxListeners < 0 {
		errs = append(errs, errors.New("emulator: MaxListeners must not be negative"))
	}
	if c.MaxMessageBytes < 0 {
		errs = append(errs, errors.New("emulator: MaxMessageBytes must not be negative"))
	}
	for i, r := range c.Rules {
		if err := checkRuleName(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("emulator: rule %d: %v", i, err))
		}
		if r.Key == "" {
			errs = append(errs, fmt.Errorf("emulator: rule %q: key is empty", r.Name))
		}
		if r.Rights == 0 {
			errs = append(errs, fmt.Errorf("emulator: rule %q: no rights", r.Name))
		}
		if r.Entity != "" {
			if err := checkEntityName(r.Entity); err != nil {
				errs = append(errs, fmt.Errorf("emulator: rule %q: entity: %v", r.Name, err))
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range c.Entities {
		if err := checkEntityName(e.Name); err != nil {
			errs = append(errs, fmt.Errorf("emulator: entity %q: %v", e.Name, err))
		}
		k := strings.ToLower(strings.Trim(e.Name, "/"))
		if seen[k] {
			errs = append(errs, fmt.Errorf("emulator: entity %q declared twice", e.Name))
		}
		seen[k] = true
	}
	return errors.Join(errs...)
}

// Server is an in-process Hybrid Connections emulator. Create it with New,
// start it with Open (or mount Handler on your own server), stop it with
// Close. All methods are safe for concurrent use.
type Server struct {
	// Static after New.
	cfg      Config
	log      *slog.Logger
	m        Metrics
	verifier *relay.Verifier
	tlsConf  *tls.Config
	entra    *EntraIssuer // nil unless cfg.Entra
	handler  http.Handler
	upgrader websocket.Upgrader
	authLog  *logLimiter
	verified verifiedTokens // SAS tokens that passed verify

	// Guarded by mu.
	mu         sync.Mutex
	entities   map[string]*entity // by lower-case name
	pending    map[string]*pendingAccept
	pendingReq map[string]*pendingRequest
	conns      map[*websocket.Conn]struct{} // every upgraded connection
	dropGen    uint64                       // incremented by DropConnections
	closed     bool
	ln         net.Listener
	srv        *http.Server

	// wg counts handler goroutines and relay pumps; Add only under mu
	// while !closed.
	wg sync.WaitGroup
}

// entity is a hybrid connection and its listeners. Guarded by Server.mu.
type entity struct {
	name      string
	anonymous bool // !RequiresClientAuthorization
	listeners []*controlChannel
	reserved  int // listen upgrades in progress, counted against the cap
}

// New validates cfg and builds a Server. log and m may be nil.
func New(cfg Config, log *slog.Logger, m Metrics) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NopMetrics{}
	}
	s := &Server{
		cfg:        cfg,
		log:        log,
		m:          m,
		authLog:    &logLimiter{period: time.Second, burst: 5},
		entities:   map[string]*entity{},
		pending:    map[string]*pendingAccept{},
		pendingReq: map[string]*pendingRequest{},
		conns:      map[*websocket.Conn]struct{}{},
	}
	for _, e := range cfg.Entities {
		name := strings.Trim(e.Name, "/")
		s.entities[strings.ToLower(name)] = &entity{name: name, anonymous: !e.RequiresClientAuthorization}
	}
	s.verifier = &relay.Verifier{Keys: s.keys, AnyHost: true}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// The relay does not check Origin; browsers may connect.
		CheckOrigin:       func(*http.Request) bool { return true },
		EnableCompression: false, // never negotiate extensions (§5.1)
		// 32 KiB buffers: a 64 KiB message leaves in 2 frames and 2 writes
		// instead of 16 (relaybench: emulator ÷ direct for 64 KiB 0.64 →
		// 0.77). The write buffer returns to the pool between messages, so
		// idle relayed connections do not hold it.
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
		WriteBufferPool: &sync.Pool{},
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.build(log)
		if err != nil {
			return nil, err
		}
		s.tlsConf = tc
	}
	if cfg.Entra != nil {
		ei, err := NewEntraIssuer(*cfg.Entra)
		if err != nil {
			return nil, err
		}
		s.entra = ei
		log.Info("Entra mode: accepting JWT access tokens", slog.String("issuer", ei.Issuer()), slog.String("jwks", EntraJWKSPath))
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s, nil
}

// keys implements relay.Verifier.Keys: the keys of every rule named
// keyName that applies to entityPath.
func (s *Server) keys(keyName, entityPath string) []string {
	var ks []string
	for _, r := range s.cfg.Rules {
		if r.Name == keyName && (r.Entity == "" || strings.EqualFold(r.Entity, entityPath)) {
			ks = append(ks, r.Key)
		}
	}
	return ks
}

// Open listens on cfg.Addr synchronously (so a busy port is an error here)
// and serves in the background until Close.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("emulator: listen: %w", err)
	}
	ln = corkListener{ln}
	if s.tlsConf != nil {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	srv := &http.Server{
		Handler: s.handler,
		// Headers must arrive promptly; bodies and WebSockets are long-lived,
		// so there is no ReadTimeout/WriteTimeout (they would also stay set
		// on hijacked connections). Request mode bounds its own waits.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// HTTP/1.1 only: reason phrases and upgrades need hijacking.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Request-mode senders keep connections alive, and a client's
	// transport may dial one more than it ends up using: Close closes
	// those at once instead of waiting 5 s for them.
	conntrack.CloseNewOnShutdown(srv, 0)
	s.mu.Lock()
	if s.closed || s.ln != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("emulator: server already opened or closed")
	}
	s.ln, s.srv = ln, srv
	s.mu.Unlock()
	go srv.Serve(ln)
	s.log.Info("relay emulator listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", s.tlsConf != nil))
	return nil
}

// Addr returns the listening address ("127.0.0.1:PORT"), or "" before Open.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Handler returns the emulator's HTTP handler, for mounting on a server of
// the caller's (which must serve HTTP/1.1 and allow hijacking).
func (s *Server) Handler() http.Handler { return s.handler }

// TLS reports whether the server serves wss:// and https://.
func (s *Server) TLS() bool { return s.tlsConf != nil }

// Close stops listening, fails waiting senders, closes every control channel
// (1001 going away) and relayed connection, and waits for the server's
// goroutines, bounded by ctx.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.srv
	conns := s.takeConnsLocked()
	pend := s.pending
	s.pending = map[string]*pendingAccept{}
	preq := s.pendingReq
	s.pendingReq = map[string]*pendingRequest{}
	s.mu.Unlock()

	for _, p := range pend {
		p.deliver(acceptResult{err: &wireError{code: http.StatusServiceUnavailable, text: "The relay is shutting down.", reason: "unavailable"}})
	}
	for _, p := range preq {
		p.fail(&wireError{code: http.StatusServiceUnavailable, text: "The relay is shutting down.", reason: "unavailable"})
	}
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "The relay is shutting down.")
	for _, c := range conns {
		c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(100*time.Millisecond))
		c.NetConn().Close()
	}
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// DropConnections abruptly closes (no close frame) every control channel and
// relayed or rendezvous connection, as a network failure would. The server
// keeps serving; clients may reconnect. For fault-injection tests.
func (s *Server) DropConnections() {
	s.mu.Lock()
	s.dropGen++
	conns := s.takeConnsLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.NetConn().Close()
	}
}

func (s *Server) takeConnsLocked() []*websocket.Conn {
	out := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// ListenerCount returns the number of control channels connected to entity
// (case-insensitive), 0 if it does not exist.
func (s *Server) ListenerCount(entityName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entities[strings.ToLower(strings.Trim(entityName, "/"))]
	if e == nil {
		return 0
	}
	return len(e.listeners)
}

// Credentials returns credentials for entity with the first rule granting
// Send (namespace-level or for that entity), Host = Addr(), and Insecure
// unless the server serves TLS. With no such rule, KeyName and Key are empty.
func (s *Server) Credentials(entityName string) relay.Credentials {
	return s.credentials(entityName, RightSend)
}

// ListenerCredentials is Credentials with the first rule granting Listen.
func (s *Server) ListenerCredentials(entityName string) relay.Credentials {
	return s.credentials(entityName, RightListen)
}

// credentials returns credentials for entity with the first rule granting
// need (see Credentials).
func (s *Server) credentials(entityName string, need Rights) relay.Credentials {
	c := relay.Credentials{Host: s.Addr(), EntityPath: strings.Trim(entityName, "/"), Insecure: s.tlsConf == nil}
	for _, r := range s.cfg.Rules {
		if r.Rights.Has(need) && (r.Entity == "" || strings.EqualFold(r.Entity, c.EntityPath)) {
			c.KeyName, c.Key = r.Name, r.Key
			break
		}
	}
	return c
}

// begin registers a handler goroutine with wg; false once closed.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// track records an upgraded connection so Close and DropConnections reach
// it; false (and the connection closed) when the server is closed.
// upgrade completes a WebSocket handshake and returns the DropConnections
// generation it started in, for track.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, hdr http.Header) (*websocket.Conn, uint64, error) {
	s.mu.Lock()
	gen := s.dropGen
	s.mu.Unlock()
	ws, err := s.upgrader.Upgrade(w, r, hdr)
	return ws, gen, err
}

// track registers an upgraded connection so that Close and DropConnections
// reach it. It closes c and returns false if the server closed, or if
// DropConnections ran since c's handshake began (gen), so a connection
// upgraded during a drop is dropped too.
func (s *Server) track(c *websocket.Conn, gen uint64) bool {
	s.mu.Lock()
	if s.closed || s.dropGen != gen {
		s.mu.Unlock()
		c.NetConn().Close()
		return false
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return true
}

func (s *Server) untrack(c *websocket.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.NetConn().Close()
}

// nextID returns a rendezvous id: base (the sender's sb-hc-id, when it is
// short and safe, else a fresh id) + "_G" + 128 random bits in hex. The
// address needs no token, so the id is its only secret: it must not be
// guessable from anything the sender or an observer knows (issue 12,
// item 5). Each id is offered on one control channel and valid once.
func (s *Server) nextID(base string) string {
	if base == "" || len(base) > 64 || strings.ContainsFunc(base, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		base = relay.NewID()
	}
	var secret [16]byte
	crand.Read(secret[:]) // never fails (crypto/rand since Go 1.24)
	return base + "_G" + hex.EncodeToString(secret[:])
}

var errShuttingDown = &wireError{code: http.StatusServiceUnavailable, text: "The relay is shutting down.", reason: "unavailable"}

// serveHTTP routes: GET /healthz; /$hc/… WebSockets by sb-hc-action;
// everything else is HTTP request mode.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		s.writeStatus(w, r, "", errShuttingDown)
		return
	}
	defer s.wg.Done()
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
		return
	}
	if s.serveEntra(w, r) {
		return
	}
	rawPath := r.URL.EscapedPath()
	if rest, ok := cutHCPrefix(rawPath); ok {
		s.serveWebSocket(w, r, rest)
		return
	}
	s.serveRequestMode(w, r, rawPath)
}

// cutHCPrefix strips "/$hc/" or "/%24hc/" (any case of the escape).
func cutHCPrefix(p string) (string, bool) {
	switch {
	case strings.HasPrefix(p, "/$hc/"):
		return p[len("/$hc/"):], true
	case len(p) >= len("/%24hc/") && strings.EqualFold(p[:len("/%24hc/")], "/%24hc/"):
		return p[len("/%24hc/"):], true
	}
	return "", false
}

// serveWebSocket dispatches /$hc/{rest} by sb-hc-action.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, rest string) {
	q := r.URL.Query()
	action := relay.Action(q.Get(relay.QueryAction))
	if !websocket.IsWebSocketUpgrade(r) {
		s.writeStatus(w, r, "", &wireError{code: http.StatusBadRequest, text: "Bad Request. A WebSocket upgrade is required on /$hc/.", reason: "bad_request"})
		return
	}
	switch action {
	case relay.ActionListen:
		s.handleListen(w, r, rest)
	case relay.ActionConnect:
		s.handleConnect(w, r, rest)
	case relay.ActionAccept:
		s.handleAccept(w, r, q)
	case relay.ActionRequest:
		s.handleRequestRendezvous(w, r, q)
	default:
		s.writeStatus(w, r, "", &wireError{code: http.StatusBadRequest, text: "Bad Request. The sb-hc-action query parameter must be listen, connect, accept or request.", reason: "bad_request"})
	}
}

// resolved is the result of looking up a request path.
type resolved struct {
	e      *entity // nil if the entity does not exist (yet)
	name   string  // entity name (declared spelling, or the first segment)
	suffix string  // the rest of the escaped path, "" or "/a/b"
}

// resolve finds the entity for an escaped path (without the leading "/" or
// "$hc/"): the longest case-insensitive segment prefix naming an entity;
// failing that, the first segment (for auto-create).
func (s *Server) resolve(rawPath string) (resolved, *wireError) {
	rawPath = strings.TrimPrefix(rawPath, "/")
	segs := strings.Split(rawPath, "/")
	dec := make([]string, len(segs))
	for i, sg := range segs {
		d, err := unescapePath(sg)
		if err != nil {
			return resolved{}, &wireError{code: http.StatusBadRequest, text: "Bad Request. The path is not correctly escaped.", reason: "bad_request"}
		}
		dec[i] = d
	}
	if dec[0] == "" {
		return resolved{}, errNotFound(errors.New("empty entity path"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(dec); i >= 1; i-- {
		if e := s.entities[strings.ToLower(strings.Join(dec[:i], "/"))]; e != nil {
			return resolved{e: e, name: e.name, suffix: joinSuffix(segs[i:])}, nil
		}
	}
	if err := checkEntityName(dec[0]); err != nil {
		return resolved{}, errNotFound(err)
	}
	return resolved{name: dec[0], suffix: joinSuffix(segs[1:])}, nil
}

func joinSuffix(segs []string) string {
	if len(segs) == 0 {
		return ""
	}
	return "/" + strings.Join(segs, "/")
}

// ensure returns res's entity, creating it if AutoCreate allows; nil means
// 404.
func (s *Server) ensure(res resolved) *entity {
	if res.e != nil {
		return res.e
	}
	if !s.cfg.AutoCreate {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(res.name)
	e := s.entities[k]
	if e == nil {
		e = &entity{name: res.name}
		s.entities[k] = e
		s.log.Info("entity created", slog.String("entity", res.name))
	}
	return e
}

// admitSender resolves a sender's path (WebSocket connect or HTTP request
// mode) and checks its token for the Send right, unless the entity is
// anonymous; httpMode also accepts the token in Authorization. On failure
// it has written the status and returns ok false. anonymous reports whether
// the entity admits senders without a token.
func (s *Server) admitSender(w http.ResponseWriter, r *http.Request, rawPath string, httpMode bool) (res resolved, anonymous, ok bool) {
	res, we := s.resolve(rawPath)
	if we != nil {
		s.writeStatus(w, r, "", we)
		return res, false, false
	}
	if res.e == nil && !s.cfg.AutoCreate {
		s.writeStatus(w, r, res.name, errNotFound(errors.New("unknown entity")))
		return res, false, false
	}
	if res.e != nil {
		s.mu.Lock()
		anonymous = res.e.anonymous
		s.mu.Unlock()
	}
	if _, we := s.authorize(r, res.name, RightSend, anonymous, httpMode); we != nil {
		s.writeStatus(w, r, res.name, we)
		return res, anonymous, false
	}
	return res, anonymous, true
}

// pickListener chooses a random listener of e allowed by the sender's
// Microsoft-Relay-AllowedListeners/DisallowedListeners headers.
func (s *Server) pickListener(e *entity, h http.Header) (*controlChannel, *wireError) {
	allowed := idSet(h.Values("Microsoft-Relay-AllowedListeners"))
	disallowed := idSet(h.Values("Microsoft-Relay-DisallowedListeners"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(e.listeners) == 0 {
		return nil, nil
	}
	var eligible []*controlChannel
	for _, l := range e.listeners {
		id := strings.ToLower(l.id)
		if (allowed == nil || allowed[id]) && !disallowed[id] {
			eligible = append(eligible, l)
		}
	}
	if len(eligible) == 0 {
		return nil, &wireError{code: http.StatusNotFound, text: "None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria.", reason: "no_listener"}
	}
	return eligible[rand.IntN(len(eligible))], nil
}

func idSet(vals []string) map[string]bool {
	if len(vals) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, v := range vals {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.ToLower(strings.TrimSpace(id)); id != "" {
				m[id] = true
			}
		}
	}
	return m
}

// remoteEndpoint splits r.RemoteAddr.
func remoteEndpoint(r *http.Request) relay.RemoteEndpoint {
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return relay.RemoteEndpoint{Address: r.RemoteAddr}
	}
	p, _ := strconv.Atoi(port)
	return relay.RemoteEndpoint{Address: host, Port: p}
}
