package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/relaygate/relaygate/internal/relay"
)

// Paths of the console's routes; internal/api mounts them (routes.go) and
// openapi.yaml documents them.
const (
	PathIndex  = "/"
	PathScript = "/console/console.js"
	PathStyle  = "/console/console.css"
	PathStatus = "/console/status"
	PathEvents = "/console/events"
)

// ContentSecurityPolicy is sent with the page and its assets: everything
// from this origin only, no inline script or style, no framing, no
// plugins, no form posts, and Trusted Types enforced (the script builds
// the page with textContent and never assigns HTML).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

//go:embed static
var static embed.FS

// Modes of Target.Mode.
const (
	ModeLocal    = "local"    // in-process emulator and built-in listener
	ModeEmulator = "emulator" // a standalone relay-emulator
	ModeAzure    = "azure"    // Azure Relay
)

// Target describes the hybrid connection the gateway sends to. It holds
// no secret.
type Target struct {
	Mode      string // ModeLocal, ModeEmulator or ModeAzure
	Namespace string // host[:port]
	Entity    string // hybrid connection name
}

// PoolStatser is what the console shows of the sender pool;
// *relay.Pool implements it.
type PoolStatser interface {
	Stats() relay.PoolStats
}

// Config configures a Console.
type Config struct {
	Target Target
	// Pool, if set, is reported by GET /console/status.
	Pool PoolStatser
	// Feed, if set (local mode), streams what the built-in listener
	// receives at GET /console/events.
	Feed *Feed
	// MaxBodyBytes is the gateway's body limit, shown on the page.
	MaxBodyBytes int64
	// Delivery is the gateway's mode, shown on the page: DeliveryPool
	// ("" too) or DeliveryRequest (request-only, no sender WebSockets).
	Delivery string
}

// Delivery modes of Config.Delivery (GATEWAY_MODE).
const (
	DeliveryPool    = "pool"
	DeliveryRequest = "request"
)

// Console serves the browser console: the page and its assets (embedded),
// a JSON status, and the feed. It is immutable after New and safe for
// concurrent use.
type Console struct {
	cfg   Config
	files map[string]asset // by route path
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// New returns a Console. It panics only if the embedded assets are
// missing, which the build would have caught.
func New(cfg Config) *Console {
	c := &Console{cfg: cfg, files: map[string]asset{}}
	for route, name := range map[string]string{
		PathIndex:  "static/index.html",
		PathScript: "static/console.js",
		PathStyle:  "static/console.css",
	} {
		b, err := fs.ReadFile(static, name)
		if err != nil {
			panic("console: embedded asset missing: " + name)
		}
		sum := sha256.Sum256(b)
		c.files[route] = asset{body: b, contentType: contentTypes[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return c
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// setSecurityHeaders sets the headers of the page and its assets.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Page returns the handler of "GET /", "GET /console/console.js" and
// "GET /console/console.css" (the embedded files, revalidated by ETag).
// Any other path answers 404; the router mounts only those three.
func (c *Console) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := c.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		setSecurityHeaders(h)
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

// Status is the JSON of GET /console/status.
type Status struct {
	Mode         string      `json:"mode"`
	Namespace    string      `json:"namespace"`
	Entity       string      `json:"entity"`
	Feed         bool        `json:"feed"`
	MaxBodyBytes int64       `json:"maxBodyBytes"`
	Pool         *PoolStatus `json:"pool,omitempty"`

	// Delivery is DeliveryRequest on a request-only gateway, else absent.
	Delivery string `json:"delivery,omitempty"`
}

// PoolStatus is the sender pool's state in Status.
type PoolStatus struct {
	Size       int    `json:"size"`
	Ready      int    `json:"ready"`
	Connecting int    `json:"connecting"`
	Backoff    int    `json:"backoff"`
	Retiring   int    `json:"retiring"`
	Queued     int    `json:"queued"`
	Reason     string `json:"reason,omitempty"`
}

// Status returns the handler of "GET /console/status": the target and the
// pool's state. It holds the namespace and entity (no secret), so the
// router puts it behind the API keys like GET /token.
func (c *Console) Status() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := Status{
			Mode: c.cfg.Target.Mode, Namespace: c.cfg.Target.Namespace, Entity: c.cfg.Target.Entity,
			Feed: c.cfg.Feed != nil, MaxBodyBytes: c.cfg.MaxBodyBytes,
		}
		if c.cfg.Delivery == DeliveryRequest {
			st.Delivery = DeliveryRequest
		}
		if c.cfg.Pool != nil {
			ps := c.cfg.Pool.Stats()
			st.Pool = &PoolStatus{
				Size: ps.Size, Ready: ps.Ready, Connecting: ps.Connecting, Backoff: ps.Backoff,
				Retiring: ps.Retiring, Queued: ps.Queued, Reason: ps.Reason,
			}
		}
		b, _ := json.Marshal(st) // strings and ints only
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(append(b, '\n'))
	})
}

// Events returns the feed's handler of "GET /console/events", or nil when
// there is no feed (then the route is not mounted).
func (c *Console) Events() http.Handler {
	if c.cfg.Feed == nil {
		return nil
	}
	return c.cfg.Feed
}

// ModeOf names the mode of a gateway: local when it runs the emulator
// in-process, otherwise emulator or azure by the credentials.
func ModeOf(local bool, c relay.Credentials) string {
	switch {
	case local:
		return ModeLocal
	case c.Insecure:
		return ModeEmulator
	default:
		return ModeAzure
	}
}
